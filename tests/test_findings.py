"""speechclip.findings: the verdict rule, the mean/std over seeds, and skipping finished runs."""
from __future__ import annotations

import json

import pytest
import torch

from speechclip import findings, pipeline
from speechclip.config import load_config
from tiny import tiny_clip, tiny_speech_encoder


def test_verdict_has_three_outcomes_and_a_one_seed_case():
    assert findings.verdict([10.0, 11.0, 12.0], [5.0, 6.0, 7.0])["verdict"] == "reproduced"
    assert findings.verdict([5.0, 6.0, 7.0], [10.0, 11.0, 12.0])["verdict"] == "not reproduced"
    assert findings.verdict([5.0, 9.0, 7.0], [6.0, 8.0, 6.5])["verdict"] == "within noise"
    one = findings.verdict([10.0], [5.0, 6.0])
    assert one["verdict"] == "one seed: no spread" and one["se"] is None and one["difference"] == pytest.approx(4.5)


def test_verdict_standard_error_unpaired_and_paired():
    r = findings.verdict([1.0, 3.0], [0.0, 0.0])  # s^2 = 2, n = 2: se = 1, d = 2 is not > 2 se
    assert r["se"] == pytest.approx(1.0) and r["verdict"] == "within noise"
    paired = findings.verdict([10.0, 20.0, 30.0], [9.0, 19.0, 29.5], paired=True)  # seed spread cancels in pairs
    assert paired["verdict"] == "reproduced"
    assert findings.verdict([10.0, 20.0, 30.0], [9.0, 19.0, 29.5])["verdict"] == "within noise"


def test_aggregate_mean_and_std_over_seeds():
    runs = {"parallel": {"7122": {"speech2image_R@1": 2.0}, "7123": {"speech2image_R@1": 4.0},
                         "7124": {"speech2image_R@1": 6.0}}}
    s = findings.aggregate(runs)["parallel"]["speech2image_R@1"]
    assert s == {"mean": pytest.approx(4.0), "std": pytest.approx(2.0), "n": 3}
    assert findings.seed_list(3) == [7122, 7123, 7124]


def test_key_metrics_read_a_hybrids_parallel_branch():
    test = {f"{p}{k}": v for p, v in (("", 1.0), ("parallel_", 2.0), ("cascaded_", 3.0))
            for k in findings.RETRIEVAL} | {"kw_avg": 50.0, "kw_chance": 40.0}
    m = findings.key_metrics("hybrid", test)
    assert m["speech2image_R@1"] == 2.0 and m["cascaded_speech2image_R@1"] == 3.0 and m["kw_avg"] == 50.0
    assert findings.key_metrics("cascaded", test)["speech2image_R@1"] == 1.0


def test_verdicts_and_table_cover_the_claims():
    runs = {f: {str(s): {"speech2image_R@1": float(s - 7000 + (5 if f == "hybrid" else 0)), "speech2image_R@10": 9.0,
                         "kw_top1_avg": 1.0, "kw_avg": 2.0, "cif_f1_20ms": 3.0 + s % 2, "even_f1_20ms": 1.0,
                         "cif_f1_50ms": 1.0, "even_f1_50ms": 1.0} for s in (7122, 7123)}
            for f in ("parallel", "cascaded", "cascaded_plus", "hybrid")}
    v = findings.verdicts(runs)
    assert set(v) == {"a", "b", "d"}  # no hybrid_plus runs: no claim (c)
    assert v["b"]["metrics"]["speech2image_R@1"]["verdict"] == "reproduced"  # +5 with the same spread
    assert v["b"]["metrics"]["speech2image_R@10"]["verdict"] == "within noise"  # equal, no spread
    rows = findings.claims_table({"summary": findings.aggregate(runs), "verdicts": v})
    assert len(rows) == 3 + 2 + 2 and set(rows["verdict"]) <= {"reproduced", "within noise", "not reproduced"}


@pytest.fixture
def tiny_backbones(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(pipeline, "load_backbones", lambda cfg, artifacts_dir=None: (tiny_speech_encoder(),
                                                                                      tiny_clip()))
    yield
    torch.set_num_threads(threads)


def test_second_call_skips_finished_runs(flickr_root, tmp_path, tiny_backbones, capsys):
    args = ["--preset", "smoke", "--seeds", "2", "--families", "parallel", "cascaded_plus",
            "--out", str(tmp_path / "findings"), "--artifacts", str(tmp_path / "artifacts"),
            "--data-dir", str(flickr_root), "--set", "train.max_steps=2", "data.batch_size=8",
            "data.eval_batch_size=8", "model.parallel_heads=2"]
    findings.main(args)
    first = capsys.readouterr().out
    assert "seeds [7122, 7123]" in first and first.count("training in") == 4
    out = json.loads((tmp_path / "findings" / "findings.json").read_text())
    assert set(out["runs"]["cascaded_plus"]["7123"]) >= {"cif_f1_20ms", "even_f1_50ms", "kw_top1_avg"}
    assert out["summary"]["parallel"]["speech2image_R@1"]["n"] == 2
    assert out["verdicts"]["d"]["metrics"]["f1_20ms"]["verdict"]
    stamp = (tmp_path / "findings" / "parallel" / "seed7122" / "best.pt").stat().st_mtime_ns
    findings.main(args)
    second = capsys.readouterr().out
    assert "training in" not in second and second.count("skipped") == 4
    assert (tmp_path / "findings" / "parallel" / "seed7122" / "best.pt").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "findings" / "findings.json").read_text())["runs"] == out["runs"]
    result = tmp_path / "findings" / "parallel" / "seed7123" / "result.json"
    findings.main([*args, "train.lr=0.002"])  # other settings: the finished runs are moved aside, not resumed
    third = capsys.readouterr().out
    assert third.count("training in") == 4 and third.count("moved to") == 4
    assert result.exists() and (result.parent.with_name("seed7123-previous-settings") / "result.json").exists()


def test_a_setting_added_since_with_its_default_keeps_a_run_finished(tmp_path):
    """A result.json written before a config field existed is what the code does with that field's default."""
    cfg = load_config("smoke", "parallel")
    stored = findings.plain_config(cfg)
    del stored["model"]["branch_pool"]  # as written before model.branch_pool existed
    (tmp_path / "result.json").write_text(json.dumps({"config": stored, "test": {}}))
    assert findings.finished(tmp_path, cfg) is not None
    cfg.model.branch_pool = 2
    assert findings.finished(tmp_path, cfg) is None  # a value other than the default is other settings
    stored["model"]["no_such_setting"] = 1  # a setting since removed: other settings
    (tmp_path / "result.json").write_text(json.dumps({"config": stored, "test": {}}))
    assert findings.finished(tmp_path, load_config("smoke", "parallel")) is None


def test_image_diversity_control_picks_equal_utterances_over_more_or_fewer_images():
    """benchmarks/image_diversity.py: the 'images' arm takes whole images, the 'captions' arm two or three captions of
    twice as many, and the picked set behaves as the training set the trainer reads."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "image_diversity.py"
    spec = importlib.util.spec_from_file_location("image_diversity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    utts = [SimpleNamespace(image_id=100 + i // 5) for i in range(20)]  # 4 images x 5 captions, grouped
    assert mod.pick(utts, 2, lambda k: 5) == list(range(10))
    assert mod.pick(utts, 4, lambda k: 2 + k % 2) == [0, 1, 5, 6, 7, 10, 11, 15, 16, 17]
    with pytest.raises(ValueError, match="has 4 images"):
        mod.pick(utts, 5, lambda k: 5)

    class Base:
        utterances, name, seed, epoch = utts, "features of train", 0, 0

        def lengths(self):
            return list(range(20))

        def set_epoch(self, e):
            self.epoch = e

        def __getitem__(self, i):
            return i

    base = Base()
    picked = mod.Picked(base, [5, 6, 7])
    assert len(picked) == 3 and picked.lengths() == [5, 6, 7] and picked[1] == 6
    assert [u.image_id for u in picked.utterances] == [101] * 3
    picked.seed, _ = 9, picked.set_epoch(2)
    assert (base.seed, base.epoch) == (9, 2)


def test_collect_arms_reads_findings_folders_into_one_table(tmp_path):
    """benchmarks/collect_arms.py: per-seed rows from result.json files, mean and spread, earlier arms kept, and an
    unfinished seed named rather than skipped."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "collect_arms.py"
    spec = importlib.util.spec_from_file_location("collect_arms", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def write(folder, seed, r1):
        d = tmp_path / folder / "parallel" / f"seed{seed}"
        d.mkdir(parents=True)
        test = {"speech2image_R@1": r1, "speech2image_R@10": r1 + 50}
        (d / "result.json").write_text(json.dumps({
            "test": test, "test_seen_voices": {"speech2image_R@1": r1 + 8}, "dev_best": {"speech2image_R@1": 40.0},
            "steps": 1000, "train_seconds": 150.0}))

    write("a", 7122, 24.0)
    write("a", 7123, 26.0)
    out = tmp_path / "arms.json"
    mod.main([str(out), "--arm", f"A={tmp_path / 'a'}", "--what", "test arms", "--command", "cmd a"])
    write("b", 7122, 20.0)
    mod.main([str(out), "--arm", f"B={tmp_path / 'b'}", "--command", "cmd b"])
    table = json.loads(out.read_text())
    assert table["what"] == "test arms" and table["commands"] == ["cmd a", "cmd b"]
    assert [r["seed"] for r in table["arms"]["A"]["runs"]] == [7122, 7123]
    assert table["arms"]["A"]["mean_std"]["R@1"] == [25.0, 1.41]
    assert table["arms"]["A"]["mean_std"]["seen_R@1"] == [33.0, 1.41]
    assert table["arms"]["B"]["mean_std"]["R@1"] == [20.0, 0.0]
    (tmp_path / "b" / "parallel" / "seed7123").mkdir()
    with pytest.raises(FileNotFoundError, match="seed7123.*has not finished"):
        mod.main([str(out), "--arm", f"B={tmp_path / 'b'}"])
