"""The SpeechCLIP+ claims of `speechclip.findings`, computed from whole tutorial runs at several seeds instead of
training the families again: notebooks 10, 11, 20 and 21 train parallel, cascaded, Cascaded+ and Hybrid with the
same code and settings as `python -m speechclip.findings` (their SEED is its train.seed), and record what it compares.

    python -m speechclip.regression --preset cpu --run-dir <dir> --seed 7123 --reuse-artifacts   # one per seed
    python benchmarks/findings_from_runs.py --runs <seed-7122 run> <seed-7123 run> <seed-7124 run> --out findings.json
    python benchmarks/results_table.py --findings findings.json                                  # the README block

Each run folder holds `artifacts/metrics/*.json` (a `benchmarks/tutorial_profile.py` clone or a regression run
folder); its seed is read from notebook 21's metrics. Hybrid+ has no notebook, so claim c is left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechclip.findings import aggregate, key_metrics, verdicts  # noqa: E402

NOTEBOOKS = {"parallel": "10_parallel", "cascaded": "11_cascaded", "cascaded_plus": "20_cif", "hybrid": "21_hybrid"}


def run_metrics(run: Path) -> tuple[int, dict]:
    """(seed, {family: key metrics}) of one run folder."""
    metrics = {}
    for family, notebook in NOTEBOOKS.items():
        path = run / "artifacts" / "metrics" / f"{notebook}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the run has no metrics of notebook {notebook}; run it first")
        record = json.loads(path.read_text())
        bounds = {tol: {"CIF": record["boundaries"]["CIF"][tol], "evenly_spaced": record["boundaries"]["evenly_spaced"][tol]}
                  for tol in ("20ms", "50ms")} if family == "cascaded_plus" else None
        metrics[family] = key_metrics(family, record["test"], bounds)
    seed = json.loads((run / "artifacts" / "metrics" / "21_hybrid.json").read_text())["seed"]
    return int(seed), metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--note", default="", help="where the runs come from (stored in the JSON)")
    args = p.parse_args()
    runs: dict = {family: {} for family in NOTEBOOKS}
    seeds = []
    for run in args.runs:
        seed, per_family = run_metrics(run)
        if seed in seeds:
            raise ValueError(f"{run}: seed {seed} twice; each run must have its own seed")
        seeds.append(seed)
        for family, m in per_family.items():
            runs[family][str(seed)] = m
    findings = {"preset": "pocket (from tutorial runs)", "seeds": seeds, "families": list(NOTEBOOKS),
                "runs_from": [str(r) for r in args.runs], "note": args.note, "runs": runs,
                "summary": aggregate(runs), "verdicts": verdicts(runs)}
    args.out.write_text(json.dumps(findings, indent=1))
    for claim, v in findings["verdicts"].items():
        for name, r in v["metrics"].items():
            print(f"{claim} {v['claim']}: {name} difference {r['difference']:+.2f}, verdict {r['verdict']}")


if __name__ == "__main__":
    main()
