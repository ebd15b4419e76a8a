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


# One vocabulary of parameters across the sequence (CONTRIBUTING.md, "Notebook parameters").
SHARED_PARAMETERS = ("DATA_DIR", "ARTIFACTS_DIR", "FIGURES_DIR", "SEED")  # every notebook has these
SYNONYMS = {"OUTPUT_DIR": "ARTIFACTS_DIR", "OUT_DIR": "ARTIFACTS_DIR", "ARTIFACTS": "ARTIFACTS_DIR",
            "RUN_DIR": "ARTIFACTS_DIR", "CORPUS_DIR": "DATA_DIR", "DATA_ROOT": "DATA_DIR", "CORPUS_ROOT": "DATA_DIR",
            "FIGURE_DIR": "FIGURES_DIR", "FIG_DIR": "FIGURES_DIR", "MODEL_PRESET": "PRESET", "CONFIG": "PRESET",
            "DATA_PRESET": "CORPUS_PRESET", "CORPUS": "CORPUS_PRESET", "RANDOM_SEED": "SEED", "TORCH_SEED": "SEED",
            "TORCH_DEVICE": "DEVICE", "USE_GPU": "DEVICE", "CUDA": "DEVICE"}


def notebook_parameters(path: Path) -> dict:
    """{NAME: literal value} of a notebook's cell tagged `parameters`."""
    import ast

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_parameters_share_one_vocabulary(path):
    from speechclip.config import PRESETS
    from speechclip.synth.corpus import CORPUS_PRESETS

    params = notebook_parameters(path)
    missing = [name for name in SHARED_PARAMETERS if name not in params]
    assert not missing, f"{path.name}: no {missing} in its parameters cell"
    other = {name: SYNONYMS[name] for name in params if name in SYNONYMS}
    assert not other, f"{path.name}: call these parameters by the shared names: {other}"
    if "PRESET" in params:  # the model preset: a key of speechclip.config.PRESETS
        assert params["PRESET"] in PRESETS, f"{path.name}: PRESET = {params['PRESET']!r} is not a model preset"
    if "CORPUS_PRESET" in params:  # the synthetic corpus's size
        assert params["CORPUS_PRESET"] in CORPUS_PRESETS, f"{path.name}: CORPUS_PRESET = {params['CORPUS_PRESET']!r}"
    if "DEVICE" in params:
        assert params["DEVICE"] == "auto" or params["DEVICE"].split(":")[0] in ("cpu", "cuda", "mps"), path.name


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


# --- the repository stands on its own: citations resolve in docs/reference.md, nothing points outside it ---

REFERENCE = ROOT / "docs" / "reference.md"
CITING = ("speechclip", "notebooks", "data_scripts")
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".txt", ".toml", ".yml", ".yaml", ".cfg", ""}
PAPER_SECTION = re.compile(r"(SpeechCLIP\+?|CLIP\)?|HuBERT\)?|paper)\s+§§?[\d.]+")  # a paper's own section
SECTION = re.compile(r"§§?(\d+(?:\.\d+)*)(?:\s*[-–]\s*§?(\d+(?:\.\d+)*))?")
PITFALL = re.compile(r"[Pp]itfalls? (\d+(?:(?:,\s*|\s+and\s+|\s+or\s+|\s*[-–]\s*)\d+)*)")


def _tracked_files() -> list[Path]:
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / line for line in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file outside ignored folders
        skip = {".git", ".venv", "data", "artifacts", "__pycache__", ".pytest_cache"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file() and p.suffix in TEXT_SUFFIXES]


def _reference_entries() -> tuple[set[str], set[str]]:
    text = REFERENCE.read_text()
    sections = set(re.findall(r"^#+ §(\d+(?:\.\d+)*)\.?\s", text, flags=re.M))
    pitfalls_part = text.split("## §9.", 1)[1].split("\n## ", 1)[0]
    pitfalls = set(re.findall(r"^(\d+)\. ", pitfalls_part, flags=re.M))
    return sections, pitfalls


def test_no_tracked_file_points_outside_the_repository():
    outside = ["/".join(["..", "shared"]), "/".join(["shared", "reference"]), "/".join(["shared", "STYLE"])]
    bad = [f"{p.relative_to(ROOT)}: {needle}" for p in _tracked_files()
           for needle in outside if needle in p.read_text(errors="ignore")]
    assert not bad, bad


def test_every_section_and_pitfall_cited_exists_in_docs_reference():
    sections, pitfalls = _reference_entries()
    assert {"1.1", "2.1", "4.2", "7.2", "8.2", "9"} <= sections and set(map(str, range(1, 19))) <= pitfalls
    missing = []
    for path in _tracked_files():
        if path.relative_to(ROOT).parts[0] not in CITING:
            continue
        text = PAPER_SECTION.sub("", path.read_text(errors="ignore"))
        for m in SECTION.finditer(text):
            missing += [f"{path.relative_to(ROOT)}: §{n}" for n in m.groups() if n and n not in sections]
        for m in PITFALL.finditer(text):
            missing += [f"{path.relative_to(ROOT)}: pitfall {n}" for n in re.findall(r"\d+", m.group(1))
                        if n not in pitfalls]
    assert not missing, sorted(set(missing))


def test_notebook_blockquotes_hold_no_reference_citations():
    """A `>` quote is a paper's own words; a quote citing docs/reference.md sections is paraphrase in disguise."""
    bad = []
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for line in "".join(cell["source"]).splitlines():
                if line.startswith(">") and (PAPER_SECTION.sub("", line).count("§") or "aphrase" in line):
                    bad.append(f"{path.name}: {line[:80]}")
    assert not bad, bad


# --- the package: no import cycles, no private names imported across modules, one definition of each name ---

PACKAGE = ROOT / "speechclip"
# Top-level names defined in two modules on purpose: (name) -> why they are two ideas, not one.
SAME_NAME_OK = {
    "Utterance": "synth.tts.Utterance is a synthesised waveform with word times; corpora.Utterance an index entry",
    "REPO_ROOT": "a path constant each of pocket and synth.corpus needs without importing the other",
    "main": "the command-line entry point of each module run with python -m (pipeline, regression)",
}


def _package_modules() -> dict[str, Path]:
    """speechclip.<dotted name> -> file; a package's __init__.py is the package itself."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_imports(module: str, path: Path, modules: dict) -> list[tuple[str, str | None, int]]:
    """(imported speechclip module, name imported from it or None, line) for every import in the file.

    Imports inside functions count: a lazy import still makes the two modules depend on each other. A parent
    package that Python imports implicitly (`speechclip` for `speechclip.data`) is not an edge.
    """
    import ast

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(owner(a.name), None, node.lineno) for a in node.names if a.name.split(".")[0] == "speechclip"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from this module's package upwards
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            if base.split(".")[0] != "speechclip":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, None, node.lineno) if sub in modules else (owner(base), a, node.lineno))
    return [(target, alias, line) for target, alias, line in found if target and target != module]


def _import_graph() -> dict[str, dict[str, int]]:
    modules = _package_modules()
    return {m: {t: line for t, _, line in _package_imports(m, p, modules)} for m, p in modules.items()}


def _find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, {})):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert _find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b": 1, "c": 1}, "b": {"c": 1}, "c": {}}) is None


def test_speechclip_modules_import_each_other_without_cycles():
    graph = _import_graph()
    assert "speechclip.data" in graph["speechclip.pipeline"]  # the parser sees imports at all
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_module_imports_another_modules_private_names():
    modules = _package_modules()
    bad = []
    for module, path in modules.items():
        for target, alias, line in _package_imports(module, path, modules):
            if alias is None:
                continue
            names = [n for n in (alias.name, alias.asname) if n and n.startswith("_") and not n.startswith("__")]
            if names:
                renamed = f" as {alias.asname}" if alias.asname else ""
                bad.append(f"{path.relative_to(ROOT)}:{line}: {alias.name}{renamed} from {target}")
    assert not bad, "make the name public where it is defined, or keep its use in that module: " + "; ".join(bad)


def test_each_top_level_name_is_defined_in_one_module():
    """One function, class or UPPER_CASE constant per idea: a second definition is imported, not repeated."""
    import ast

    where: dict[str, list[str]] = {}
    for module, path in _package_modules().items():
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
            for name in names:
                if not name.startswith("_"):
                    where.setdefault(name, []).append(module)
    repeated = {n: ms for n, ms in where.items() if len(ms) > 1 and n not in SAME_NAME_OK}
    assert not repeated, repeated
