"""Regression runs: every notebook in order through papermill for a named preset, compared with stored baselines.

    python -m speechclip.regression --preset smoke --run-dir artifacts/regression/smoke
    python -m speechclip.regression --preset smoke --run-dir artifacts/regression/smoke --update-baselines
    python -m speechclip.regression --preset cpu --run-dir artifacts/regression/cpu --notebooks 00,01

Run presets (`RUN_PRESETS`): `smoke` (model preset smoke on the CPU, on the seed-0 smoke synthetic corpus,
seconds per notebook, what the tests and CI run), `cpu` (alias `tutorial`: the notebooks' own offline defaults on
the seed-0 `cpu` corpus, 30 to 45 minutes on 2 cores, by the machine's speed), `base` and `large` (the paper
presets: a GPU, downloaded or local weights and a prepared Flickr8k folder given with --data-dir, which notebook 00
reads as it is). Each notebook gets the parameters of the one vocabulary (CONTRIBUTING.md) that it declares:
CORPUS_PRESET, DATA_DIR, ARTIFACTS_DIR, FIGURES_DIR, PRESET (the model preset), SEED, DEVICE. The run
folder keeps the executed notebooks, `artifacts/` (with `metrics/<notebook>.json`), `figures/` and `report.json`
(parameters, wall times, every comparison row). `--compare-only` compares an earlier run folder again;
`--reuse-artifacts --notebooks 11,20` reruns those notebooks in an earlier run folder and keeps the others' outputs.

A run fails (exit 1) when a notebook raises (named with its cell and exception), records no metrics or a non-finite
number, saves no figure, or a metric regresses; it exits 2 on bad arguments and 3 when there is no baseline to
compare with (`--update-baselines` writes one).

Baselines live in `tests/baselines/<preset>.json`: `{"_about": {...}, "metrics": {"<notebook>/<key.path>":
{"value": v, "tol": t, "rule": r}}}`. Metric keys are the notebooks' metrics JSON flattened (nested keys joined by
".", list items by index); strings and nulls are not compared. Rules (absolute tolerance `tol`):
- `higher`: higher is better (recall, accuracy, hit rates): a drop beyond tol is a regression; a rise beyond tol is
  reported as "better than baseline — refresh?", not a failure.
- `lower`: lower is better (losses): the mirror image.
- `exact`: counts, shapes, steps, parameter counts: any difference fails.
- `close`: two-sided, |run - baseline| <= tol (reference values such as chance levels, untrained recall, padding).
- `info`: shown, never compared (wall times).
A baseline metric missing from the run fails; a run metric missing from the baseline is reported as new. Rules are
guessed from the key when a metric first enters a baseline (`infer_rule`) and can be edited by hand afterwards;
`--update-baselines` refreshes values and keeps hand-set rules and tolerances. `--spread-from RUN_DIR ...` widens
the tolerance of every compared number to `--spread-factor` times its range over those runs and this one (e.g.
other seeds); an integer that varied over them (a best layer) becomes `close`. Notebooks run with
PYTHONHASHSEED=0 (unless set) and HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechclip import baselines
from speechclip.baselines import flatten

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
BASELINE_DIR = REPO / "tests" / "baselines"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_BASELINE = 0, 1, 2, 3

# Run preset -> synthetic corpus (notebook 00's CORPUS_PRESET, built strictly at seed 0 unless --data-dir is given;
# None: --data-dir is required), the other notebook parameters, and a note on what it needs. The parameter names
# are the notebooks' one vocabulary (CONTRIBUTING.md): PRESET is the model preset of load_config.
RUN_PRESETS = {
    "smoke": {"corpus": "smoke", "params": {"PRESET": "smoke", "DEVICE": "cpu"}, "needs": "CPU, seconds per notebook"},
    "cpu": {"corpus": "cpu", "params": {},
            "needs": "CPU, 30 to 45 minutes on 2 cores, by the machine's speed (the notebooks' defaults)"},
    "base": {"corpus": None, "params": {"PRESET": "base", "DEVICE": "cuda"},
             "needs": "a GPU, HuBERT Base / CLIP ViT-B-32 weights, --data-dir with a prepared Flickr8k"},
    "large": {"corpus": None, "params": {"PRESET": "large", "DEVICE": "cuda"},
              "needs": "a GPU, HuBERT Large / CLIP ViT-L-14 weights, --data-dir with a prepared Flickr8k"},
}
ALIASES = {"tutorial": "cpu"}


class RegressionFailure(Exception):
    """A notebook failed, recorded no usable metrics or figures: the message names the notebook and the cell."""


# --- running the notebooks ---------------------------------------------------------------------------------------

def notebooks(selection: str | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The ordered sequence `notebooks/[0-9]*.ipynb`, optionally only those whose name starts with one of
    the comma-separated prefixes in `selection` ("00,10")."""
    paths = sorted(Path(folder).glob("[0-9]*.ipynb"))
    if not selection:
        return paths
    prefixes = [s.strip() for s in selection.split(",") if s.strip()]
    chosen = [p for p in paths if any(p.stem.startswith(s) for s in prefixes)]
    unknown = [s for s in prefixes if not any(p.stem.startswith(s) for p in paths)]
    if unknown:
        raise ValueError(f"no notebook starts with {unknown}; have {[p.stem for p in paths]}")
    return chosen


def preset_parameters(preset: str, run_dir: Path, data_dir: str | None = None, seed: int | None = None) -> dict:
    """Notebook parameters of a run preset: corpus (CORPUS_PRESET, DATA_DIR), model PRESET, DEVICE, SEED and the
    folders inside the run folder. Without `data_dir` the preset's synthetic corpus is the strict seed-0 one
    (`make_corpus`), so that the numbers are those of the corpus the baseline was measured on."""
    spec = RUN_PRESETS[ALIASES.get(preset, preset)]
    if data_dir is None:
        if spec["corpus"] is None:
            raise ValueError(f"preset {preset!r} needs --data-dir; it needs {spec['needs']}")
        from speechclip.synth import make_corpus

        data_dir = str(make_corpus(REPO / "data" / f"synthetic_{spec['corpus']}", spec["corpus"], seed=0,
                                   progress=False))
    params = {**({"CORPUS_PRESET": spec["corpus"]} if spec["corpus"] else {}), **spec["params"],
              "DATA_DIR": str(Path(data_dir).resolve()),
              "ARTIFACTS_DIR": str((run_dir / "artifacts").resolve()),
              "FIGURES_DIR": str((run_dir / "figures").resolve())}
    if seed is not None:
        params["SEED"] = seed
    return params


def declared_parameters(notebook: Path, params: dict) -> dict:
    """The subset of `params` the notebook's parameters cell declares."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    return {name: value for name, value in params.items() if name in declared}


def _kernel_environment() -> None:
    # The kernel inherits this process's environment: this checkout's package, no hub downloads, and fixed string
    # hashing so that set iteration order (vocabularies) is the same run to run.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")


def execute(notebook: Path, out_path: Path, params: dict, prepare_only: bool = False) -> float:
    """Run one notebook with papermill; return wall seconds or raise RegressionFailure naming the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _kernel_environment()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(out_path), parameters=params, cwd=str(notebook.parent),
                                   kernel_name="python3", progress_bar=False, prepare_only=prepare_only)
    except PapermillExecutionError as e:
        # e.cell_index counts the executed copy's cells (papermill inserted a parameters cell): find the source's.
        import nbformat

        cells = nbformat.read(str(notebook), as_version=4).cells
        index = next((i for i, c in enumerate(cells) if c.source == e.source), e.cell_index)
        first_line = next((ln for ln in e.source.splitlines() if ln.strip()), "")
        raise RegressionFailure(
            f"{notebook.name} failed in cell {index} (0-based, Markdown cells counted; In [{e.exec_count}] of "
            f"{out_path}): {e.ename}: {e.evalue}\n    cell starts: {first_line[:100]}") from None
    except Exception as e:  # the kernel died (memory), a cell timed out, papermill could not start: no cell error
        raise RegressionFailure(f"{notebook.name} did not finish{_cell_in_progress(notebook, out_path)}: "
                                f"{type(e).__name__}: {e}") from None
    return time.perf_counter() - t0


def _cell_in_progress(notebook: Path, out_path: Path) -> str:
    """The last cell papermill's saved copy says it started, as " in cell N (starting: ...)" of the source."""
    try:
        import nbformat

        started = [c for c in nbformat.read(str(out_path), as_version=4).cells
                   if c.get("metadata", {}).get("papermill", {}).get("start_time")]
        source = [c.source for c in nbformat.read(str(notebook), as_version=4).cells]
    except Exception:  # noqa: BLE001  no copy was written
        return ""
    if not started or started[-1].source not in source:
        return ""
    first = next((ln for ln in started[-1].source.splitlines() if ln.strip()), "")
    return f" in cell {source.index(started[-1].source)} (starting: {first[:80]})"


# --- checks on what a notebook recorded --------------------------------------------------------------------------

def check_recorded_numbers(record: dict, name: str) -> None:
    """Every recorded number is finite, every recall a percentage, and a trained model ran all its steps."""
    if not isinstance(record, dict) or not record:
        raise RegressionFailure(f"{name}: empty metrics record")
    for key, value in flatten(record).items():
        if not math.isfinite(value):
            raise RegressionFailure(f"{name}: {key} = {value}")
        if "R@" in key.rsplit(".", 1)[-1] and not 0 <= value <= 100:
            raise RegressionFailure(f"{name}: {key} = {value} is not a percentage")
    if "max_steps" in record and record.get("steps") != record["max_steps"]:
        raise RegressionFailure(f"{name}: stopped at step {record.get('steps')} of {record['max_steps']}")


def check_figure(path: Path) -> None:
    """A readable PNG of a real size that is not one flat colour."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        size, extrema = im.size, im.convert("L").getextrema()
    if min(size) < 100:
        raise RegressionFailure(f"{path.name}: figure of size {size}")
    if extrema[0] >= extrema[1]:
        raise RegressionFailure(f"{path.name} is a single flat colour")


def collect(notebook: Path, params: dict) -> dict:
    """Check a finished notebook's metrics JSON and figures; return its metrics record."""
    if "ARTIFACTS_DIR" not in params:
        raise RegressionFailure(f"{notebook.name} declares no ARTIFACTS_DIR parameter: its metrics cannot be found")
    artifacts = Path(params["ARTIFACTS_DIR"])
    path = artifacts / "metrics" / f"{notebook.stem}.json"
    if not path.exists():
        raise RegressionFailure(f"{notebook.name} did not record {path}")
    record = json.loads(path.read_text())
    check_recorded_numbers(record, notebook.name)
    figures = sorted(Path(params["FIGURES_DIR"]).glob(f"{notebook.stem[:2]}_*.png"))
    if not figures:
        raise RegressionFailure(f"{notebook.name} saved no figure in {params['FIGURES_DIR']}")
    for figure in figures:
        check_figure(figure)
    return record


@dataclass
class Run:
    """A run folder filled notebook by notebook, in order; `through(stem)` runs what is still missing up to it."""

    preset: str
    run_dir: Path
    params: dict
    records: dict = field(default_factory=dict)  # notebook stem -> metrics record
    wall: dict = field(default_factory=dict)  # notebook stem -> seconds
    failed: dict = field(default_factory=dict)  # notebook stem -> message

    def run(self, notebook: Path) -> dict:
        stem = notebook.stem
        if stem in self.failed:
            raise RegressionFailure(self.failed[stem])
        if stem not in self.records:
            try:
                params = declared_parameters(notebook, self.params)
                self.wall[stem] = execute(notebook, self.run_dir / notebook.name, params)
                self.records[stem] = collect(notebook, params)
            except RegressionFailure as e:
                self.failed[stem] = str(e)
                raise
        return self.records[stem]

    def through(self, stem: str, sequence: list[Path] | None = None) -> dict:
        for nb in sequence or notebooks():
            self.run(nb)
            if nb.stem == stem:
                return self.records[stem]
        raise KeyError(stem)

    def flat(self) -> dict:
        return {f"{stem}/{k}": v for stem, rec in self.records.items() for k, v in flatten(rec).items()}


# --- the command --------------------------------------------------------------------------------------------------

def baseline_path(preset: str) -> Path:
    return BASELINE_DIR / f"{ALIASES.get(preset, preset)}.json"


def machine() -> str:
    """What the numbers were measured on, for a baseline's `_about`."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {cpu}, {os.cpu_count()} cores"
    return (f"{platform.system()} {platform.machine()}, {device}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def arithmetic() -> str:
    """Which arithmetic the numbers come from: torch's version and the CPU's vector unit (and bf16), or the GPU.

    A fixed seed reproduces a run bit for bit only on the same arithmetic. Two hosts both called "AMD EPYC", one
    with AVX512 and bf16 and one without, rounded the smoke models differently from the first step, and six training
    steps on eight images turn the last bit into tens of points of recall; a baseline records this string, and a run
    on other arithmetic compares its structure, not its values (`compare_values`).
    """
    import torch

    from speechclip.cpu import cpu_has_native_bf16

    if torch.cuda.is_available():
        return f"torch {torch.__version__}, {torch.cuda.get_device_name()}"
    bf16 = " with native bf16" if cpu_has_native_bf16() else ""
    return f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}{bf16}"


def compare_values(baseline: dict | None) -> tuple[bool, str]:
    """Whether this machine can reproduce the baseline's values, and a line saying why not."""
    written, here = ((baseline or {}).get("_about") or {}).get("arithmetic"), arithmetic()
    if written is None or written == here:
        return True, ""
    return False, (f"the baseline was written on other arithmetic ({written}; this machine: {here}), so values are "
                   "shown, not enforced: only missing metrics fail. Refresh it on this machine to compare values "
                   "(--update-baselines, with --spread-from runs to keep the tolerances honest).")


def git_commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + (" (with local changes)" if git("status", "--porcelain",
                                                                                     "-uno") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_metrics(run_dir: Path, stems=None) -> dict:
    """A finished run folder's metrics, flattened with notebook prefixes (for --spread-from)."""
    out = {}
    for path in sorted((Path(run_dir) / "artifacts" / "metrics").glob("*.json")):
        if stems is None or path.stem in stems:
            out.update({f"{path.stem}/{k}": v for k, v in flatten(json.loads(path.read_text())).items()})
    if not out:
        raise ValueError(f"{run_dir} holds no artifacts/metrics/*.json")
    return out


def clear_outputs(run_dir: Path, keep_artifacts: bool, stems: list[str] | None = None) -> None:
    """Remove what an earlier run left in the run folder (only the paths a run writes), so stale files never pass.

    With `keep_artifacts` and `stems` (a rerun of some notebooks in an earlier run folder) only those notebooks'
    executed copies, metrics and figures go; the other notebooks' outputs stay for the ones that read them."""
    import shutil

    if keep_artifacts and stems is not None:
        paths = [run_dir / "report.json"]
        for stem in stems:
            paths += [run_dir / f"{stem}.ipynb", run_dir / "artifacts" / "metrics" / f"{stem}.json",
                      *(run_dir / "figures").glob(f"{stem[:2]}_*.png")]
    else:
        paths = [*run_dir.glob("*.ipynb"), run_dir / "report.json", run_dir / "figures",
                 run_dir / "artifacts" / "metrics", *([] if keep_artifacts else [run_dir / "artifacts"])]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m speechclip.regression", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(f"  {k:<6} {v['needs']}" for k, v in RUN_PRESETS.items()))
    p.add_argument("--preset", required=True, choices=[*RUN_PRESETS, *ALIASES])
    p.add_argument("--run-dir", type=Path, help="default artifacts/regression/<preset>")
    p.add_argument("--notebooks", help="comma-separated name prefixes, e.g. 00,01 (default: all, in order)")
    p.add_argument("--data-dir", help="corpus folder (required for base/large; default: the preset's synthetic one)")
    p.add_argument("--seed", type=int, help="SEED for every notebook (default: each notebook's own)")
    p.add_argument("--baseline", type=Path, help="default tests/baselines/<preset>.json")
    p.add_argument("--update-baselines", action="store_true", help="write the baseline from this run")
    p.add_argument("--spread-from", type=Path, nargs="*", default=[], metavar="RUN_DIR",
                   help="with --update-baselines: earlier run folders (other seeds) whose spread sets tolerances")
    p.add_argument("--spread-factor", type=float, default=1.5)
    p.add_argument("--reuse-artifacts", action="store_true",
                   help="keep the run folder's cached backbones and features from an earlier run; with "
                        "--notebooks, rerun only those and keep the other notebooks' outputs")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the parameterised notebooks into the run folder (for nbval)")
    p.add_argument("--compare-only", action="store_true",
                   help="run nothing: compare the metrics an earlier run left in --run-dir")
    p.add_argument("--notebook-dir", type=Path, default=NOTEBOOK_DIR, help=argparse.SUPPRESS)  # tests
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = ALIASES.get(args.preset, args.preset)
    run_dir = (args.run_dir or REPO / "artifacts" / "regression" / preset).resolve()
    if run_dir == REPO or run_dir in REPO.parents or (run_dir / ".git").exists():
        print(f"error: --run-dir {run_dir} is a checkout; a run clears its figures/ and artifacts/", file=sys.stderr)
        return EXIT_USAGE
    try:
        sequence = notebooks(args.notebooks, args.notebook_dir)
        params = ({} if args.compare_only else preset_parameters(preset, run_dir, args.data_dir, args.seed))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not args.compare_only:
        clear_outputs(run_dir, keep_artifacts=args.reuse_artifacts,
                      stems=[nb.stem for nb in sequence] if args.notebooks else None)
    if args.prepare_only:
        for nb in sequence:
            execute(nb, run_dir / nb.name, declared_parameters(nb, params), prepare_only=True)
        print(f"wrote {len(sequence)} parameterised notebooks to {run_dir}")
        return EXIT_OK

    print(f"comparing {run_dir} ('{preset}')" if args.compare_only else
          f"regression run '{preset}' ({RUN_PRESETS[preset]['needs']}) -> {run_dir}", flush=True)
    run, failure = Run(preset, run_dir, params), None
    for nb in sequence:
        if args.compare_only:
            path = run_dir / "artifacts" / "metrics" / f"{nb.stem}.json"
            if not path.exists():
                failure = f"{nb.name}: no metrics at {path} to compare"
                break
            run.records[nb.stem] = json.loads(path.read_text())
            continue
        print(f"== {nb.name}", flush=True)
        try:
            run.run(nb)
        except RegressionFailure as e:
            failure = str(e)
            break
        print(f"   ok, {run.wall[nb.stem]:.1f} s", flush=True)
    stems, flat = list(run.records), run.flat()
    path = args.baseline or baseline_path(preset)
    old = baselines.load(path)
    same, why = compare_values(old)
    rows = baselines.compare(flat, old or {}, notebooks=stems, values=same)
    if why:
        print(f"note: {why}", flush=True)
    report = {"preset": preset, "params": params, "notebooks": [nb.stem for nb in sequence], "baseline": str(path),
              "wall_seconds": run.wall, "failure": failure, "rows": [vars(r) for r in rows]}
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / ("compare.json" if args.compare_only else "report.json")
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(baselines.table(rows, run.wall))
    if failure:
        print(f"\nFAILED: {failure}\nexecuted notebooks: {run_dir}", file=sys.stderr)
        return EXIT_FAILED
    if args.update_baselines:
        spreads = (baselines.spread([flat] + [run_metrics(d, stems) for d in args.spread_from])
                   if args.spread_from else None)
        new = baselines.updated(flat, old, spreads, args.spread_factor, notebooks=stems)
        new["_about"].update(preset=preset, updated=datetime.date.today().isoformat(), machine=machine(),
                             arithmetic=arithmetic(), commit=git_commit())
        if spreads:
            new["_about"]["tolerances"] = (
                f"compared floats: at least {args.spread_factor} x the range over {1 + len(args.spread_from)} runs "
                f"({', '.join(str(d.name) for d in args.spread_from)} and this one); integers exact unless they "
                "varied over those runs (then close); wall times not compared")
        new["_about"].setdefault("tolerances", "integers exact; floats 1e-6 relative (rounding noise) until a "
                                               "spread is measured (--spread-from); wall times not compared")
        baselines.save(new, path)
        print(f"\nwrote {path}: {len(new['metrics'])} metrics")
        return EXIT_OK
    if old is None:
        print(f"\nno baseline at {path}: nothing to compare with. Rerun with --update-baselines to create it from "
              f"this run (or compare this run folder later).", file=sys.stderr)
        return EXIT_NO_BASELINE
    notes = [r.message for r in rows if r.status in ("better", "new")]
    failed = [r.message for r in rows if r.failed]
    for line in notes:
        print(f"note: {line}")
    if failed:
        print("\n" + "\n".join(f"FAILED: {m}" for m in failed), file=sys.stderr)
        return EXIT_FAILED
    print(f"\n{len(rows)} metrics compared with {path}: no regression")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
