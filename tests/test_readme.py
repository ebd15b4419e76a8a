"""The README's results table is what the recorded tutorial run says (benchmarks/results_table.py)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "tests" / "baselines" / "cpu.json"


def _results_table():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "benchmarks" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not BASELINE.exists(), reason="no cpu baseline: make regression PRESET=cpu UPDATE=1")
def test_readme_results_match_the_recorded_tutorial_run():
    rt = _results_table()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(re.escape(rt.START) + r"\n(.*?)\n" + re.escape(rt.END), text, flags=re.S)
    assert found, f"README.md has no {rt.START} block"
    assert found.group(1) == rt.render(rt.from_baseline(BASELINE)), (
        "README results differ from tests/baselines/cpu.json: python benchmarks/results_table.py "
        "--baseline tests/baselines/cpu.json")


FINDINGS = ROOT / "benchmarks" / "findings_pocket.json"


@pytest.mark.skipif(not FINDINGS.exists(), reason="no stored findings: python -m speechclip.findings")
def test_readme_findings_match_the_stored_findings_run():
    import json

    rt = _results_table()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(re.escape(rt.FINDINGS_START) + r"\n(.*?)\n" + re.escape(rt.FINDINGS_END), text, flags=re.S)
    assert found, f"README.md has no {rt.FINDINGS_START} block"
    assert found.group(1) == rt.render_findings(json.loads(FINDINGS.read_text())), (
        "README findings differ from benchmarks/findings_pocket.json: python benchmarks/results_table.py "
        "--findings benchmarks/findings_pocket.json")


FINDINGS_RUNS = ROOT / "benchmarks" / "findings_runs.json"


@pytest.mark.skipif(not FINDINGS_RUNS.exists(), reason="no stored findings from tutorial runs")
def test_readme_findings_from_runs_match_the_stored_ones():
    import json

    rt = _results_table()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(re.escape(rt.RUNS_START) + r"\n(.*?)\n" + re.escape(rt.RUNS_END), text, flags=re.S)
    assert found, f"README.md has no {rt.RUNS_START} block"
    assert found.group(1) == rt.render_findings(json.loads(FINDINGS_RUNS.read_text())), (
        "README findings from runs differ from benchmarks/findings_runs.json: python benchmarks/results_table.py "
        "--findings-runs benchmarks/findings_runs.json")
