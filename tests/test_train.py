"""Training tests: learning happens, resume ends where an uninterrupted run ends, DDP over gloo works."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechclip.evaluation import evaluate
from speechclip.features import collate_features
from speechclip.model import build_model, load_model
from speechclip.corpora import WeightsError
from speechclip.train import TrainingFault, fit, lr_factor
from tiny import ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder

HERE = Path(__file__).parent


def run(tmp, family="parallel", stop=None, train_set=None, collate=collate_features, allow=False, hook=None,
        **overrides):
    cfg = tiny_config(family, **overrides)
    model = build_model(cfg, tiny_speech_encoder(), tiny_clip())
    if hook is not None:
        model.layer_weights.weights.register_hook(hook)
    state = fit(model, ToyFeatures() if train_set is None else train_set, ToyFeatures(seed=1), cfg, tmp, collate, progress=False,
                stop_after_steps=stop, allow_config_change=allow)
    return model, state


def rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_schedule_warmup_then_linear_decay():
    assert lr_factor(0, 10, 100, 1e-4) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 1e-4) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 1e-4) == pytest.approx(1e-4)
    assert lr_factor(55, 10, 100, 0.0) == pytest.approx(0.5)


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_fit_learns_and_logs(tmp_path, family):
    model, state = run(tmp_path, family, **{"train.max_steps": 30})
    logged = rows(tmp_path)
    train = [r["loss"] for r in logged if r["split"] == "train"]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5  # the loss goes down
    dev = [r for r in logged if r["split"] == "dev"]
    assert dev and (tmp_path / "best.pt").exists()
    best = max(dev, key=lambda r: r["mean_R@10"])  # the first of equal scores: later ties do not replace it
    assert state.best == best["mean_R@10"] and state.best_metrics == {k: v for k, v in best.items()
                                                                      if k not in ("step", "epoch", "split")}
    learned = evaluate(model, ToyFeatures(), collate_features, 8, text_retrieval=False)
    assert learned["mean_R@1"] > 3 * 100 / 8  # on its own training toy set; chance R@1 is 12.5 % (8 images)
    best = load_model(tmp_path / "best.pt", tiny_speech_encoder(), tiny_clip())
    assert best.cfg.model.family == family


@pytest.mark.parametrize("family", ["cascaded_plus", "hybrid", "hybrid_plus"])
def test_speechclip_plus_trains_logs_and_evaluates(tmp_path, family):
    model, state = run(tmp_path, family, **{"train.max_steps": 30, "model.cif_scaling_steps": 6})
    logged = rows(tmp_path)
    train = [r for r in logged if r["split"] == "train"]
    assert sum(r["loss"] for r in train[-5:]) < sum(r["loss"] for r in train[:5])
    if family != "hybrid":  # CIF: the quantity loss and fired keywords against the target in every train row
        assert all({"quantity_loss", "cif_tokens", "cif_target", "cif_count_error"} <= r.keys() for r in train)
        assert all(r["cif_count_error"] == 0 for r in train[:6])  # rescaled to the target in the first steps
    dev = [r for r in logged if r["split"] == "dev"]
    assert dev and "kw_avg" in dev[-1] and "kw_chance" in dev[-1]
    if family != "cascaded_plus":  # two embeddings: both scored, the configured one is the headline
        source = model.retrieval_source
        assert dev[-1]["mean_R@10"] == dev[-1][f"{source}_mean_R@10"] and "parallel_mean_R@1" in dev[-1]
    best = load_model(tmp_path / "best.pt", tiny_speech_encoder(), tiny_clip())
    assert best.cfg.model.family == family and state.step == 30


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_resume_ends_where_uninterrupted_run_ends(tmp_path, family):
    extra = {"train.max_steps": 9, "train.checkpoint_every": 1, "model.dropout": 0.1}
    straight, _ = run(tmp_path / "a", family, **extra)
    run(tmp_path / "b", family, stop=4, **extra)  # "killed" after step 4, mid-epoch (3 batches per epoch)
    resumed, state = run(tmp_path / "b", family, **extra)
    assert state.step == 9
    a, b = straight.trainable_state_dict(), resumed.trainable_state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_ddp_two_processes_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(HERE / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in r0:  # DDP keeps every process's replica identical
        assert torch.equal(r0[k], r1[k]), k
    start = build_model(tiny_config("parallel"), tiny_speech_encoder(), tiny_clip()).trainable_state_dict()
    assert any(not torch.equal(start[k], r0[k]) for k in r0)  # and it trained
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


# ---------------------------------------------------------------- faults

def test_two_runs_with_one_seed_log_equal_metrics(tmp_path):
    extra = {"train.max_steps": 6, "model.dropout": 0.1}
    run(tmp_path / "a", **extra)
    run(tmp_path / "b", **extra)
    assert rows(tmp_path / "a") == rows(tmp_path / "b") and len(rows(tmp_path / "a")) > 6


def test_bf16_autocast_on_cpu_trains(tmp_path):
    seen = set()
    cfg = tiny_config("parallel", **{"train.max_steps": 12, "train.precision": "bf16"})
    model = build_model(cfg, tiny_speech_encoder(), tiny_clip())
    model.parallel.proj.register_forward_hook(lambda m, i, o: seen.add(o.dtype) if model.training else None)
    fit(model, ToyFeatures(), ToyFeatures(seed=1), cfg, tmp_path, collate_features, progress=False)
    assert seen == {torch.bfloat16}  # the training forward ran under bf16 autocast
    train = [r["loss"] for r in rows(tmp_path) if r["split"] == "train"]
    assert all(math.isfinite(x) for x in train) and sum(train[-3:]) < sum(train[:3])


class PoisonedFeatures(ToyFeatures):
    """The toy set with NaN hidden states in one utterance, as a corrupt feature cache would give."""

    def __init__(self, index=5):
        super().__init__()
        self.items[index] = {**self.items[index], "hidden": torch.full_like(self.items[index]["hidden"], math.nan)}


def test_nonfinite_loss_stops_naming_the_step_before_any_bad_checkpoint(tmp_path):
    with pytest.raises(TrainingFault, match=r"step (\d+) \(epoch 0, batch \d\): non-finite loss") as err:
        run(tmp_path, train_set=PoisonedFeatures(), **{"train.checkpoint_every": 1})
    step = int(re.search(r"step (\d+)", str(err.value))[1])
    if step > 1:
        last = torch.load(tmp_path / "last.pt", weights_only=False)
        assert last["state"]["step"] == step - 1
        assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert max(r["step"] for r in rows(tmp_path)) == step - 1 if step > 1 else True


def test_nonfinite_gradient_with_finite_loss_is_an_error(tmp_path):
    with pytest.raises(TrainingFault, match=r"step 1: non-finite gradient .*layer_weights.weights.*finite loss"):
        run(tmp_path, hook=lambda g: g * math.inf, **{"train.checkpoint_every": 1})
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the skipped step's
def test_fp16_overflow_steps_are_skipped_then_a_real_overflow_is_an_error(tmp_path):
    calls = []

    def first_step_overflows(g):
        calls.append(1)
        return g * math.inf if len(calls) == 1 else g

    fp16 = {"train.precision": "fp16", "train.max_steps": 4}
    _, state = run(tmp_path / "a", hook=first_step_overflows, **fp16)
    assert state.step == 4 and state.amp_skipped == 1
    assert [r.get("amp_skipped", False) for r in rows(tmp_path / "a") if r["split"] == "train"] == [True] + [False] * 3
    # 2**16 halves to 1 in 16 skipped steps; still overflowing at scale 1 is not the scaler's doing
    with pytest.raises(TrainingFault, match=r"step 17: non-finite gradient .*at loss scale 1.0 after 16 skipped"):
        run(tmp_path / "b", hook=lambda g: g * math.inf, **{**fp16, "train.max_steps": 30})


@pytest.mark.parametrize("size, text", [(6, "has 6 utterances, fewer than one batch of 8"), (0, "is empty")])
def test_train_split_smaller_than_one_batch_is_an_immediate_error(tmp_path, size, text):
    with pytest.raises(TrainingFault, match=text):  # the old loop spun forever, validating and checkpointing
        run(tmp_path, train_set=ToyFeatures(n_images=size // 3, per_image=3))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_with_another_config_refuses_unless_asked(tmp_path):
    run(tmp_path, stop=4, **{"train.checkpoint_every": 1})
    with pytest.raises(TrainingFault, match=r"last.pt was written with a different config: train.lr 0.003 -> 0.001"):
        run(tmp_path, **{"train.lr": 1e-3})
    with pytest.raises(TrainingFault, match=r"model.family 'parallel' -> 'cascaded'"):
        run(tmp_path, "cascaded")
    with pytest.raises(TrainingFault, match=r"train.max_steps 12 -> 20"):  # the decay schedule ends elsewhere
        run(tmp_path, **{"train.max_steps": 20})
    _, state = run(tmp_path, **{"train.log_every": 2})  # where and how often it logs changes nothing learned
    assert state.step == 12
    _, state = run(tmp_path, allow=True, **{"train.max_steps": 14})
    assert state.step == 14


def test_crash_after_the_last_checkpoint_resumes_without_duplicate_log_rows(tmp_path):
    extra = {"train.max_steps": 9, "train.checkpoint_every": 3, "model.dropout": 0.1}
    straight, _ = run(tmp_path / "a", **extra)
    calls = []

    def crashing_collate(batch):
        calls.append(1)
        if len(calls) == 8:  # step 5's batch: steps 1-3, the 3 dev batches of the epoch's end, step 4
            raise KeyboardInterrupt
        return collate_features(batch)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", collate=crashing_collate, **extra)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]["step"] == 3
    assert max(r["step"] for r in rows(tmp_path / "b")) == 4  # the log is ahead of the checkpoint
    resumed, state = run(tmp_path / "b", **extra)
    assert state.step == 9
    assert rows(tmp_path / "b") == rows(tmp_path / "a")  # every step once, and the same numbers
    a, b = straight.trainable_state_dict(), resumed.trainable_state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_cut_short_checkpoints_name_the_file(tmp_path):
    run(tmp_path, stop=4, **{"train.checkpoint_every": 1})
    for name in ("last.pt", "best.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"last.pt \(\d+ bytes\) is not a readable checkpoint.*cut short"):
        run(tmp_path)
    with pytest.raises(WeightsError, match=r"best.pt \(\d+ bytes\) is not a readable checkpoint"):
        load_model(tmp_path / "best.pt", tiny_speech_encoder(), tiny_clip())


def test_pipeline_command_under_torchrun_trains_once_and_evaluates_on_the_first_process(tmp_path):
    """`torchrun -m speechclip.pipeline`: one set of caches, DDP training, one result.json (gloo on the CPU)."""
    from test_pocket import make_corpus

    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "speechclip.pipeline", "--preset", "smoke", "--family", "parallel", "--out", str(tmp_path / "run"),
           "--artifacts", str(tmp_path / "artifacts"),
           "--set", f"data.root={corpus}", "train.max_steps=4", "data.batch_size=4", "train.device=cpu",
           "pocket_hubert.steps=4", "pocket_clip.epochs=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 4 and "speech2image_R@1" in result["test"]
    assert proc.stdout.count('"family"') == 1  # printed by the first process only
    assert len(list((tmp_path / "artifacts" / "features").glob("speech-*"))) == 3  # train, dev, test: cached once
    assert len([p for p in (tmp_path / "artifacts" / "pocket").iterdir() if not p.name.startswith(".")]) == 2
