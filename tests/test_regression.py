"""The regression runner (speechclip/regression.py) and its comparison with baselines (speechclip/baselines.py).

Comparison rules on hand-made metric dicts; the command end to end on tiny notebooks written here (a few
seconds of kernel start-up each): a raising cell fails naming the notebook and the cell, a baseline tightened past
what the run reaches fails naming the metric, and baselines are written only when asked.
"""
import json

import nbformat
import pytest

from speechclip import baselines, regression
from speechclip.baselines import Row, compare, flatten, infer_rule, updated


def _baseline(**entries):
    return {"_about": {}, "metrics": {k: dict(zip(("value", "tol", "rule"), v)) for k, v in entries.items()}}


BASE = _baseline(**{"10_parallel/test.speech2image_R@1": (20.0, 2.5, "higher"),
                    "10_parallel/test.loss": (2.0, 0.1, "lower"),
                    "10_parallel/steps": (6, 0, "exact"),
                    "10_parallel/chance.R@1": (12.5, 0.01, "close")})
RUN = {"10_parallel/test.speech2image_R@1": 20.0, "10_parallel/test.loss": 2.0, "10_parallel/steps": 6,
       "10_parallel/chance.R@1": 12.5}


def _status(run, baseline=BASE):
    return {r.key: r.status for r in compare(run, baseline)}


def test_identical_run_passes():
    rows = compare(RUN, BASE)
    assert [r.status for r in rows] == ["ok"] * 4 and not any(r.failed for r in rows)


def test_a_drop_beyond_tolerance_is_a_regression_named_by_its_metric():
    rows = compare({**RUN, "10_parallel/test.speech2image_R@1": 17.0}, BASE)
    failed = [r for r in rows if r.failed]
    assert [r.key for r in failed] == ["10_parallel/test.speech2image_R@1"]
    assert failed[0].status == "REGRESSION"
    assert "10_parallel/test.speech2image_R@1: regressed" in failed[0].message and "17" in failed[0].message


def test_tolerance_is_respected_both_ways():
    assert _status({**RUN, "10_parallel/test.speech2image_R@1": 17.5})["10_parallel/test.speech2image_R@1"] == "ok"
    assert _status({**RUN, "10_parallel/test.speech2image_R@1": 22.5})["10_parallel/test.speech2image_R@1"] == "ok"
    assert _status({**RUN, "10_parallel/test.loss": 2.1})["10_parallel/test.loss"] == "ok"


def test_an_improvement_is_reported_not_failed():
    rows = compare({**RUN, "10_parallel/test.speech2image_R@1": 30.0}, BASE)
    better = [r for r in rows if r.status == "better"]
    assert len(better) == 1 and not any(r.failed for r in rows)
    assert "better than baseline — refresh?" in better[0].message
    assert "better than baseline — refresh?" in baselines.table(rows)


def test_losses_point_the_other_way():
    assert _status({**RUN, "10_parallel/test.loss": 2.5})["10_parallel/test.loss"] == "REGRESSION"
    assert _status({**RUN, "10_parallel/test.loss": 1.5})["10_parallel/test.loss"] == "better"


def test_counts_match_exactly_and_reference_values_within_tolerance():
    assert _status({**RUN, "10_parallel/steps": 5})["10_parallel/steps"] == "CHANGED"
    assert _status({**RUN, "10_parallel/chance.R@1": 12.6})["10_parallel/chance.R@1"] == "CHANGED"
    assert _status({**RUN, "10_parallel/chance.R@1": 12.4})["10_parallel/chance.R@1"] == "CHANGED"


def test_a_missing_metric_fails_and_a_new_one_is_only_reported():
    run = {k: v for k, v in RUN.items() if k != "10_parallel/test.loss"}
    run["10_parallel/test.new_R@1"] = 3.0
    rows = {r.key: r for r in compare(run, BASE)}
    assert rows["10_parallel/test.loss"].status == "MISSING" and rows["10_parallel/test.loss"].failed
    assert rows["10_parallel/test.new_R@1"].status == "new" and not rows["10_parallel/test.new_R@1"].failed


def test_on_other_arithmetic_values_are_shown_and_only_missing_metrics_fail(monkeypatch):
    run = {**RUN, "10_parallel/test.speech2image_R@1": 5.0, "10_parallel/steps": 7}
    del run["10_parallel/test.loss"]
    rows = {r.key: r for r in compare(run, BASE, values=False)}
    assert rows["10_parallel/test.speech2image_R@1"].status == "differs" and not rows["10_parallel/steps"].failed
    assert "other arithmetic" in rows["10_parallel/steps"].message and rows["10_parallel/chance.R@1"].status == "ok"
    assert [k for k, r in rows.items() if r.failed] == ["10_parallel/test.loss"]
    monkeypatch.setattr(regression, "arithmetic", lambda: "torch 0, CPU AVX2")
    assert regression.compare_values(BASE) == (True, "")  # a baseline that does not say: values compared
    assert regression.compare_values({"_about": {"arithmetic": "torch 0, CPU AVX2"}}) == (True, "")
    same, why = regression.compare_values({"_about": {"arithmetic": "torch 0, CPU AVX512 with native bf16"}})
    assert not same and "AVX512 with native bf16" in why and "AVX2" in why


def test_wall_times_are_shown_never_compared():
    base = _baseline(**{"10_parallel/wall_seconds.train": (2.0, None, "info")})
    rows = compare({"10_parallel/wall_seconds.train": 200.0}, base)
    assert rows[0].status == "info" and not rows[0].failed
    assert compare({}, base)[0].status == "info"


def test_only_the_selected_notebooks_are_compared():
    rows = compare({"00_setup_and_data/images.test": 8}, BASE, notebooks=["00_setup_and_data"])
    assert [(r.key, r.status) for r in rows] == [("00_setup_and_data/images.test", "new")]


def test_flatten_and_rules_from_names():
    flat = flatten({"test": {"speech2image_R@1": 2.5, "loss": 2.2}, "steps": 6, "device": "cpu", "seen": None,
                    "layer_accuracy": [0.2, 0.3], "wall_seconds": {"train": 3.0}})
    assert flat == {"test.speech2image_R@1": 2.5, "test.loss": 2.2, "steps": 6, "layer_accuracy.0": 0.2,
                    "layer_accuracy.1": 0.3, "wall_seconds.train": 3.0}
    rules = {k: infer_rule(k, v) for k, v in flat.items()}
    assert rules == {"test.speech2image_R@1": "higher", "test.loss": "lower", "steps": "exact",
                     "layer_accuracy.0": "higher", "layer_accuracy.1": "higher", "wall_seconds.train": "info"}
    assert infer_rule("untrained_test.speech2image_R@1", 12.5) == "close"
    assert infer_rule("test.kw_top1_prior", 34.0) == "close"
    assert infer_rule("test.kw_chance", 59.5) == "close"


def test_refreshing_keeps_hand_set_rules_and_widens_tolerances_from_a_spread():
    old = _baseline(**{"a/x_R@1": (10.0, 4.0, "higher"), "a/y": (1.0, 0.0, "close"), "b/z": (3, 0, "exact")})
    new = updated({"a/x_R@1": 12.0, "a/y": 1.5, "a/new_loss": 0.7}, old, spreads={"a/y": 0.2, "a/x_R@1": 1.0},
                  notebooks=["a"])["metrics"]
    assert new["a/x_R@1"] == {"value": 12.0, "rule": "higher", "tol": 4.0}  # hand-set tolerance never narrowed
    assert new["a/y"] == {"value": 1.5, "rule": "close", "tol": 0.3}  # 1.5 x spread
    assert new["a/new_loss"]["rule"] == "lower" and new["a/new_loss"]["tol"] < 1e-5
    assert new["b/z"] == {"value": 3, "tol": 0, "rule": "exact"}  # notebook not in this run: kept
    assert baselines.spread([{"k": 1.0, "n": 3}, {"k": 1.25, "n": 3}]) == {"k": 0.25, "n": 0}
    varying = updated({"a/best_layer": 2, "a/steps": 6}, None, spreads={"a/best_layer": 2, "a/steps": 0})["metrics"]
    assert varying == {"a/best_layer": {"value": 2, "rule": "close", "tol": 3.0},
                       "a/steps": {"value": 6, "rule": "exact", "tol": 0}}


def test_rows_message_names_the_metric():
    row = Row("11_cascaded/test.mean_R@1", "higher", 20.0, 10.0, 1.0, "REGRESSION")
    assert row.message.startswith("11_cascaded/test.mean_R@1: regressed")


# --- the command on tiny notebooks ------------------------------------------------------------------------------

PARAMS = 'DATA_DIR = "."\nARTIFACTS_DIR = "artifacts"\nFIGURES_DIR = "figures"\nSEED = 0'
RECORD = """import os
from PIL import Image, ImageDraw
from speechclip.notebook import save_metrics
os.makedirs(FIGURES_DIR, exist_ok=True)
im = Image.new("RGB", (120, 120), "white")
ImageDraw.Draw(im).line((0, 0, 119, 119), fill="black")
im.save(f"{FIGURES_DIR}/00_demo.png")
save_metrics("00_tiny", {"test": {"speech2image_R@1": 25.0, "loss": 1.5}, "steps": 3, "device": "cpu"},
             ARTIFACTS_DIR)"""


def _write_notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}))
    for cell in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(cell[3:]) if cell.startswith("md:") else
                        nbformat.v4.new_code_cell(cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def _main(tmp_path, *extra):
    return regression.main(["--preset", "smoke", "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path),
                            "--notebook-dir", str(tmp_path / "nbs"), "--baseline", str(tmp_path / "smoke.json"),
                            *extra])


def test_a_raising_cell_fails_the_run_naming_notebook_and_cell(tmp_path, capsys):
    _write_notebook(tmp_path / "nbs" / "00_tiny.ipynb", "x = 1", "md:# a heading", "raise ValueError('deliberate')")
    _write_notebook(tmp_path / "nbs" / "01_after.ipynb", RECORD)
    assert _main(tmp_path) == regression.EXIT_FAILED
    err = capsys.readouterr().err
    assert "00_tiny.ipynb failed in cell 3" in err and "ValueError: deliberate" in err
    assert "raise ValueError('deliberate')" in err
    assert not (tmp_path / "run" / "01_after.ipynb").exists()  # the sequence stops at the failure
    assert json.loads((tmp_path / "run" / "report.json").read_text())["failure"].startswith("00_tiny.ipynb")


def test_a_dying_kernel_fails_the_run_naming_notebook_and_cell(tmp_path, capsys):
    _write_notebook(tmp_path / "nbs" / "00_dies.ipynb", "x = 1", "import os\nos._exit(1)  # as an out-of-memory kill")
    assert _main(tmp_path) == regression.EXIT_FAILED
    err = capsys.readouterr().err
    assert "00_dies.ipynb did not finish in cell 2 (starting: import os)" in err and "DeadKernelError" in err


def test_baselines_are_written_only_when_asked_and_a_tightened_one_fails_naming_the_metric(tmp_path, capsys):
    _write_notebook(tmp_path / "nbs" / "00_tiny.ipynb", RECORD)
    assert _main(tmp_path) == regression.EXIT_NO_BASELINE  # runs and records, but has nothing to compare with
    assert not (tmp_path / "smoke.json").exists() and "--update-baselines" in capsys.readouterr().err
    assert _main(tmp_path, "--compare-only", "--update-baselines") == regression.EXIT_OK
    baseline = json.loads((tmp_path / "smoke.json").read_text())
    assert baseline["metrics"]["00_tiny/steps"] == {"value": 3, "tol": 0, "rule": "exact"}
    assert {"updated", "machine", "tolerances"} <= set(baseline["_about"])
    assert _main(tmp_path, "--compare-only") == regression.EXIT_OK
    assert "no regression" in capsys.readouterr().out

    baseline["metrics"]["00_tiny/test.speech2image_R@1"].update(value=40.0, tol=1.0)  # past what the code reaches
    (tmp_path / "smoke.json").write_text(json.dumps(baseline))
    assert _main(tmp_path, "--compare-only") == regression.EXIT_FAILED
    err = capsys.readouterr().err
    assert "FAILED: 00_tiny/test.speech2image_R@1: regressed (higher): baseline 40, run 25" in err
    assert json.loads((tmp_path / "smoke.json").read_text())["metrics"]["00_tiny/test.speech2image_R@1"][
        "value"] == 40.0  # a failing comparison never rewrites the baseline


def test_rerunning_some_notebooks_keeps_the_others_outputs(tmp_path, capsys):
    _write_notebook(tmp_path / "nbs" / "00_tiny.ipynb", RECORD)
    _write_notebook(tmp_path / "nbs" / "01_next.ipynb", RECORD.replace("00_demo", "01_demo").replace(
        '"00_tiny"', '"01_next"').replace("25.0", "30.0"))
    run = tmp_path / "run"
    assert _main(tmp_path, "--update-baselines") == regression.EXIT_OK
    kept = [run / "00_tiny.ipynb", run / "artifacts" / "metrics" / "00_tiny.json", run / "figures" / "00_demo.png"]
    stamps = [p.stat().st_mtime_ns for p in kept]
    (run / "artifacts" / "metrics" / "01_next.json").unlink()  # must come back from the rerun
    assert _main(tmp_path, "--reuse-artifacts", "--notebooks", "01") == regression.EXIT_OK
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # notebook 00 was neither rerun nor removed
    assert (run / "artifacts" / "metrics" / "01_next.json").exists() and (run / "figures" / "01_demo.png").exists()
    report = json.loads((run / "report.json").read_text())
    assert list(report["wall_seconds"]) == ["01_next"]
    assert _main(tmp_path, "--compare-only") == regression.EXIT_OK  # the folder is whole again


def test_unknown_notebook_prefix_and_missing_data_dir_are_usage_errors(tmp_path):
    _write_notebook(tmp_path / "nbs" / "00_tiny.ipynb", "x = 1")
    assert _main(tmp_path, "--notebooks", "42") == regression.EXIT_USAGE
    assert regression.main(["--preset", "base", "--run-dir", str(tmp_path / "r")]) == regression.EXIT_USAGE
    assert regression.main(["--preset", "smoke", "--run-dir", str(regression.REPO)]) == regression.EXIT_USAGE


@pytest.mark.parametrize("preset", ["smoke", "cpu", "tutorial", "base", "large"])
def test_every_run_preset_maps_to_parameters_every_notebook_declares(preset, tmp_path):
    params = regression.preset_parameters(preset, tmp_path, data_dir=str(tmp_path), seed=3)
    assert {"DATA_DIR", "ARTIFACTS_DIR", "FIGURES_DIR", "SEED"} <= set(params)
    corpus = {"smoke": "smoke", "cpu": "cpu", "tutorial": "cpu"}.get(preset)
    assert params.get("CORPUS_PRESET") == corpus
    if preset == "smoke":
        assert params["PRESET"] == "smoke" and params["DEVICE"] == "cpu"
    for nb in regression.notebooks():
        declared = regression.declared_parameters(nb, params)
        assert set(declared) >= {"DATA_DIR", "ARTIFACTS_DIR", "FIGURES_DIR", "SEED"}, nb.name
        # the notebooks of the CONTRIBUTING.md table declare the names that reach them
        wanted = {"CORPUS_PRESET": ("00",), "PRESET": ("01", "10", "11"), "DEVICE": ("10", "11")}
        for name, numbers in wanted.items():
            if name in params and nb.stem[:2] in numbers:
                assert declared.get(name) == params[name], (nb.name, name)
