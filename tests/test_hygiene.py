"""Repository hygiene: notebooks carry no outputs and exactly one parameters cell, each is in sync with its paired
percent-format `.py`; the repository cites only its own reference; environments agree."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_no_outputs_and_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', want exactly 1"
    for line in "".join(tagged[0]["source"]).splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.match(r"^[A-Z][A-Z0-9_]* = .+$", line), f"{path.name}: not an UPPER_CASE literal: {line}"
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Exercises" in text


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    def source(cell):
        return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return [(c["cell_type"], source(c), list(c.get("metadata", {}).get("tags", []))) for c in nb["cells"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_in_sync_with_its_percent_script(path):
    jupytext = pytest.importorskip("jupytext")
    script = path.with_suffix(".py")
    assert script.exists(), f"{script.name} missing: jupytext --set-formats ipynb,py:percent {path.name}"
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{path.name} is not paired"
    want, got = _cells(nb), _cells(jupytext.read(script))
    for i, (a, b) in enumerate(zip(want, got)):
        assert a == b, f"{path.name} cell {i} differs from {script.name}: run jupytext --sync {path.name}"
    assert len(want) == len(got), f"{path.name}: {len(want)} cells, {script.name}: {len(got)}; run jupytext --sync"


def test_every_notebook_script_has_a_notebook():
    scripts = {p.stem for p in (ROOT / "notebooks").glob("*.py")}
    assert scripts == {p.stem for p in NOTEBOOKS}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        pip_names |= {_name(r) for r in extra}
    env = (ROOT / "environment.yml").read_text()
    pip_block = env.split("- pip:", 1)[1]
    conda_names = {_name(line.strip()[2:]) for line in pip_block.splitlines() if line.strip().startswith("- ")}
    assert conda_names == pip_names


def test_constraints_pin_every_direct_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    direct = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        direct |= {_name(r) for r in extra}
    assert direct <= pins, f"unpinned: {sorted(direct - pins)}"


def test_ci_calls_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
