"""Training tests: learning happens, resume ends where an uninterrupted run ends, DDP over gloo works."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechclip.features import collate_features
from speechclip.model import build_model, load_model
from speechclip.train import fit, lr_factor
from tiny import ToyFeatures, tiny_clip, tiny_config, tiny_speech_encoder

HERE = Path(__file__).parent


def run(tmp, family="parallel", stop=None, **overrides):
    cfg = tiny_config(family, **overrides)
    model = build_model(cfg, tiny_speech_encoder(), tiny_clip())
    state = fit(model, ToyFeatures(), ToyFeatures(seed=1), cfg, tmp, collate_features, progress=False,
                stop_after_steps=stop)
    return model, state


def test_schedule_warmup_then_linear_decay():
    assert lr_factor(0, 10, 100, 1e-4) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 1e-4) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 1e-4) == pytest.approx(1e-4)
    assert lr_factor(55, 10, 100, 0.0) == pytest.approx(0.5)


@pytest.mark.parametrize("family", ["parallel", "cascaded"])
def test_fit_learns_and_logs(tmp_path, family):
    model, state = run(tmp_path, family, **{"train.max_steps": 30})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["split"] == "train"]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5  # the loss goes down
    assert any(r["split"] == "dev" for r in rows) and (tmp_path / "best.pt").exists()
    assert state.best_metrics["mean_R@10"] >= 0
    best = load_model(tmp_path / "best.pt", tiny_speech_encoder(), tiny_clip())
    assert best.cfg.model.family == family


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
