"""Every notebook runs end to end with papermill on smoke parameters (synthetic data, CPU, no downloads)."""
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
    papermill = pytest.importorskip("papermill")
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
    assert list(run_dirs["figures"].glob(f"{notebook.stem[:2]}_*.png")), f"{notebook.name} saved no figure"
