"""Every notebook runs end to end with papermill on smoke parameters (synthetic data, CPU, no downloads), through
the regression runner, and its recorded metrics match tests/baselines/smoke.json.

The notebooks run once per session, in order, into one run folder (`speechclip.regression.Run`): a notebook's test
runs the ones before it first, as `make regression PRESET=smoke` does. Each notebook gets the parameters of the one
vocabulary (CONTRIBUTING.md) that it declares, from `regression.preset_parameters("smoke", ...)`: the strict seed-0
smoke corpus, model preset smoke, DEVICE cpu. The runner checks what the old per-notebook test checked: no cell
raises, a metrics JSON with finite numbers (recalls in percent, every training step run) and readable, non-flat
figures. Notebook 00 also runs on corpora it did not make, which it must read as they are.
"""
import copy
import json
import os
from pathlib import Path

import pytest

from speechclip import baselines, regression
from speechclip.regression import check_recorded_numbers

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = regression.notebooks()
BASELINE = regression.baseline_path("smoke")
REFRESH = "if the change is intended: make regression PRESET=smoke UPDATE=1 (see CONTRIBUTING.md)"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    import papermill  # noqa: F401  a test dependency (pyproject [test]): missing, this must fail, not skip

    run_dir = tmp_path_factory.mktemp("regression_smoke")
    return regression.Run("smoke", run_dir, regression.preset_parameters("smoke", run_dir))


def _run_all(smoke_run) -> dict:
    try:
        smoke_run.through(NOTEBOOKS[-1].stem, NOTEBOOKS)
    except regression.RegressionFailure as e:
        pytest.fail(f"the smoke run did not finish: {e}", pytrace=False)
    return smoke_run.flat()


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(notebook, smoke_run):
    try:
        record = smoke_run.through(notebook.stem, NOTEBOOKS)
    except regression.RegressionFailure as e:
        pytest.fail(str(e), pytrace=False)
    used = regression.declared_parameters(notebook, smoke_run.params)
    assert {"DATA_DIR", "ARTIFACTS_DIR", "FIGURES_DIR"} <= used.keys(), f"{notebook.name} ignores {used}"
    trains = (Path(used["ARTIFACTS_DIR"]) / "runs" / notebook.stem).is_dir()  # notebook 30 evaluates, trains nothing
    if "DEVICE" in used and not trains:
        assert record.get("device", "cpu") == "cpu", f"{notebook.name} ran on {record.get('device')}"
    if "DEVICE" in used and trains:  # DEVICE reaches training: the checkpoint fit wrote says where it trained
        import torch

        checkpoint = Path(used["ARTIFACTS_DIR"]) / "runs" / notebook.stem / "last.pt"
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"]["train"]["device"]
        assert used["DEVICE"] == "cpu" and saved == "cpu" and record["device"] == "cpu", (notebook.name, saved)


@pytest.mark.notebook
def test_smoke_metrics_match_the_baseline(smoke_run):
    baseline = baselines.load(BASELINE)
    assert baseline is not None, f"no {BASELINE}: make regression PRESET=smoke UPDATE=1 writes it"
    same, why = regression.compare_values(baseline)  # values are reproducible only on the baseline's arithmetic
    rows = baselines.compare(_run_all(smoke_run), baseline, values=same)
    print(baselines.table(rows, smoke_run.wall))
    if why:
        print(why)
    failed = [r.message for r in rows if r.failed]
    assert not failed, "\n".join(failed + [REFRESH])


@pytest.mark.notebook
def test_a_baseline_tightened_past_the_run_fails_naming_the_metric(smoke_run):
    flat, baseline = _run_all(smoke_run), copy.deepcopy(baselines.load(BASELINE))
    key = next(k for k, e in baseline["metrics"].items() if e["rule"] == "higher" and k in flat)
    baseline["metrics"][key].update(value=flat[key] + 10 * (baseline["metrics"][key]["tol"] + 1))
    failed = [r for r in baselines.compare(flat, baseline) if r.failed]
    assert [r.key for r in failed] == [key] and failed[0].message.startswith(f"{key}: regressed")


def run_notebook(notebook: Path, out: Path, **params) -> dict:
    """papermill with the parameters the notebook declares (the shared names of tests/test_hygiene.py)."""
    import papermill  # a test dependency (pyproject [test]): missing, this must fail, not skip

    declared = papermill.inspect_notebook(str(notebook))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The kernel imports this checkout's package even where it was not pip-installed (make setup installs it).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    used = {k: v for k, v in params.items() if k in declared}
    papermill.execute_notebook(str(notebook), str(out), parameters=used, cwd=str(notebook.parent),
                               kernel_name="python3", progress_bar=False)
    return used


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("kind", ["flickr8k_layout", "synthetic_seed_1"])
def test_data_notebook_reads_the_users_corpus_as_it_is(kind, writers, tmp_path_factory):
    """Notebook 00 on a corpus it did not make: a Flickr8k-format folder, a synthetic corpus of another seed."""
    from speechclip.corpora import SPLITS, read_flickr_split
    from speechclip.synth import make_corpus

    base = tmp_path_factory.mktemp(kind)
    if kind == "flickr8k_layout":
        corpus, want = writers.flickr(base / "flickr8k"), {"synthetic": False}
    else:
        corpus = make_corpus(base / "synthetic", "smoke", seed=1, progress=False)
        want = {"synthetic": True, "preset": "smoke", "seed": 1}
    before = _files(corpus)
    notebook, out = ROOT / "notebooks" / "00_setup_and_data.ipynb", base / "out.ipynb"
    run_notebook(notebook, out, CORPUS_PRESET="smoke", DATA_DIR=str(corpus), ARTIFACTS_DIR=str(base / "artifacts"),
                 FIGURES_DIR=str(base / "figures"))
    assert _files(corpus) == before, "the notebook changed the corpus it was given"
    record = json.loads((base / "artifacts" / "metrics" / "00_setup_and_data.json").read_text())
    check_recorded_numbers(record, kind)
    assert record["corpus"] == want
    assert record["utterances"] == {s: len(read_flickr_split(corpus, s)) for s in SPLITS}
    streams = [o.get("text", "") for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    printed = "".join("".join(t) if isinstance(t, list) else t for t in streams)
    assert ("not a synthetic corpus: no scene metadata" in printed) == (kind == "flickr8k_layout")
    assert ("seen_voices/: 40 test utterances" in printed) == (kind == "synthetic_seed_1")
