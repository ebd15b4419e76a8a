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
    from speechclip.synth import ensure_corpus

    return ensure_corpus("smoke", ROOT / "data" / "synthetic_smoke")


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebook_runs")
    return {name: base / name for name in ("artifacts", "figures", "out")}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(notebook, smoke_corpus, run_dirs):
    import papermill  # a test dependency (pyproject [test]): missing, this must fail, not skip
    for d in run_dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    params = {"PRESET": "smoke", "DATA_DIR": str(smoke_corpus), "ARTIFACTS_DIR": str(run_dirs["artifacts"]),
              "OUTPUT_DIR": str(run_dirs["artifacts"]), "FIGURES_DIR": str(run_dirs["figures"])}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The kernel imports this checkout's package even where it was not pip-installed (make setup installs it).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    papermill.execute_notebook(str(notebook), str(run_dirs["out"] / notebook.name), parameters=params,
                               cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    metrics = run_dirs["artifacts"] / "metrics" / f"{notebook.stem}.json"
    assert metrics.exists(), f"{notebook.name} did not record {metrics}"
    check_recorded_numbers(json.loads(metrics.read_text()), notebook.name)
    figures = sorted(run_dirs["figures"].glob(f"{notebook.stem[:2]}_*.png"))
    assert figures, f"{notebook.name} saved no figure"
    for figure in figures:
        check_figure(figure)


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
