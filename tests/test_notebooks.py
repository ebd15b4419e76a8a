"""Every notebook runs end to end with papermill on smoke parameters (synthetic data, CPU, no downloads)."""
import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="session")
def smoke_corpus():
    from speechclip.synth import make_corpus

    # strict: exactly the seed-0 smoke corpus of this generator version (ensure_corpus would read any corpus there)
    return make_corpus(ROOT / "data" / "synthetic_smoke", "smoke", seed=0, progress=False)


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebook_runs")
    return {name: base / name for name in ("artifacts", "figures", "out")}


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


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(notebook, smoke_corpus, run_dirs):
    for d in run_dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    used = run_notebook(notebook, run_dirs["out"] / notebook.name, PRESET="smoke", CORPUS_PRESET="smoke",
                        DATA_DIR=str(smoke_corpus), ARTIFACTS_DIR=str(run_dirs["artifacts"]),
                        FIGURES_DIR=str(run_dirs["figures"]), DEVICE="cpu")
    assert {"DATA_DIR", "ARTIFACTS_DIR", "FIGURES_DIR"} <= used.keys(), f"{notebook.name} ignores {used}"
    metrics = run_dirs["artifacts"] / "metrics" / f"{notebook.stem}.json"
    assert metrics.exists(), f"{notebook.name} did not record {metrics}"
    check_recorded_numbers(json.loads(metrics.read_text()), notebook.name)
    run = run_dirs["artifacts"] / "runs" / notebook.stem
    if "DEVICE" in used:  # DEVICE reaches training: the checkpoint fit wrote says where it trained
        import torch

        saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["config"]["train"]["device"]
        assert saved == "cpu" and json.loads(metrics.read_text())["device"] == "cpu", (notebook.name, saved)
    figures = sorted(run_dirs["figures"].glob(f"{notebook.stem[:2]}_*.png"))
    assert figures, f"{notebook.name} saved no figure"
    for figure in figures:
        check_figure(figure)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("kind", ["flickr8k_layout", "synthetic_seed_1"])
def test_data_notebook_reads_the_users_corpus_as_it_is(kind, writers, tmp_path_factory):
    """Notebook 00 on a corpus it did not make: a Flickr8k-format folder, a synthetic corpus of another seed."""
    from speechclip.data import SPLITS, read_flickr_split
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


def _leaves(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    else:
        yield key, value


def check_recorded_numbers(record: dict, name: str) -> None:
    """Every recorded number is finite, every recall a percentage, and a trained model ran all its steps."""
    assert isinstance(record, dict) and record, f"{name}: empty metrics record"
    for key, value in _leaves(record):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value), f"{name}: {key} = {value}"
            if "R@" in key:
                assert 0 <= value <= 100, f"{name}: {key} = {value} is not a percentage"
    if "max_steps" in record:
        assert record["steps"] == record["max_steps"], f"{name}: stopped at step {record['steps']}"


def check_figure(path: Path) -> None:
    """A readable PNG of a real size that is not one flat colour."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        assert min(im.size) >= 100, f"{path.name}: {im.size}"
        extrema = im.convert("L").getextrema()
    assert extrema[0] < extrema[1], f"{path.name} is a single flat colour"
