"""Every notebook runs end to end with papermill on smoke parameters (synthetic data, CPU, no downloads), through
the regression runner, and its recorded metrics match tests/baselines/smoke.json.

The notebooks run once per session, in order, into one run folder (`speechclip.regression.Run`): a notebook's test
runs the ones before it first, as `make regression PRESET=smoke` does. The runner checks what the old per-notebook
test checked: no cell raises, a metrics JSON with finite numbers (recalls in percent, every training step run) and
readable, non-flat figures.
"""
import copy

import pytest

from speechclip import baselines, regression

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
        smoke_run.through(notebook.stem, NOTEBOOKS)
    except regression.RegressionFailure as e:
        pytest.fail(str(e), pytrace=False)


@pytest.mark.notebook
def test_smoke_metrics_match_the_baseline(smoke_run):
    baseline = baselines.load(BASELINE)
    assert baseline is not None, f"no {BASELINE}: make regression PRESET=smoke UPDATE=1 writes it"
    rows = baselines.compare(_run_all(smoke_run), baseline)
    print(baselines.table(rows, smoke_run.wall))
    failed = [r.message for r in rows if r.failed]
    assert not failed, "\n".join(failed + [REFRESH])


@pytest.mark.notebook
def test_a_baseline_tightened_past_the_run_fails_naming_the_metric(smoke_run):
    flat, baseline = _run_all(smoke_run), copy.deepcopy(baselines.load(BASELINE))
    key = next(k for k, e in baseline["metrics"].items() if e["rule"] == "higher" and k in flat)
    baseline["metrics"][key].update(value=flat[key] + 10 * (baseline["metrics"][key]["tol"] + 1))
    failed = [r for r in baselines.compare(flat, baseline) if r.failed]
    assert [r.key for r in failed] == [key] and failed[0].message.startswith(f"{key}: regressed")
