"""Gather `speechclip.findings` output folders into one table of arms (per-seed test recall, mean and spread).

Every control in benchmarks/README.md that trains a family over seeds is a `speechclip.findings` run with some
`--set` overrides; this script reads their `<out>/<family>/seed*/result.json` files and writes (or extends) a JSON
file of arms, so the numbers quoted in the README come from files, not from reading logs by eye.

    python benchmarks/collect_arms.py benchmarks/parallel_controls_2.json \
        --what "pocket parallel on the tutorial's backbones, ..." \
        --arm "batch 128, 500 steps=/work/exp/b128" --command "python -m speechclip.findings ... --set ..."
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def arm_runs(out_dir: Path, family: str) -> list[dict]:
    """One row per seed folder: test speech->image R@1 / R@10 (held-out voices), seen-voice R@1, dev R@1, time."""
    rows = []
    for seed_dir in sorted((out_dir / family).glob("seed*")):
        result_file = seed_dir / "result.json"
        if not result_file.exists():
            raise FileNotFoundError(f"{result_file}: this seed has not finished (no result.json); wait for the run "
                                    "or leave the folder out")
        r = json.loads(result_file.read_text())
        seen = r.get("test_seen_voices") or {}
        rows.append({
            "seed": int(seed_dir.name.removeprefix("seed")),
            "R@1": round(r["test"]["speech2image_R@1"], 2),
            "R@10": round(r["test"]["speech2image_R@10"], 2),
            "seen_R@1": round(seen["speech2image_R@1"], 2) if seen else None,
            "dev_R@1": round(r["dev_best"]["speech2image_R@1"], 2),
            "steps": r["steps"],
            "train_seconds": r["train_seconds"],
        })
    if not rows:
        raise FileNotFoundError(f"{out_dir / family}: no seed* folders; is this a speechclip.findings --out folder?")
    return rows


def mean_std(rows: list[dict], key: str) -> list[float] | None:
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return None
    return [round(statistics.mean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else 0.0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the JSON file to write; arms already in it are kept unless named again")
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=DIR",
                    help="an arm's name and its speechclip.findings --out folder (repeatable)")
    ap.add_argument("--family", default="parallel")
    ap.add_argument("--what", help="what the arms are (kept from the file when not given)")
    ap.add_argument("--command", action="append", default=[], help="the command that made an arm (repeatable)")
    args = ap.parse_args(argv)

    table = json.loads(args.out.read_text()) if args.out.exists() else {"what": "", "commands": [], "arms": {}}
    if args.what:
        table["what"] = args.what
    table["commands"] += [c for c in args.command if c not in table["commands"]]
    for spec in args.arm:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"--arm {spec!r}: write NAME=DIR")
        rows = arm_runs(Path(folder), args.family)
        table["arms"][name] = {"runs": rows, "mean_std": {k: mean_std(rows, k) for k in ("R@1", "R@10", "seen_R@1")}}
        print(f"{name}: R@1 {table['arms'][name]['mean_std']['R@1']}, R@10 {table['arms'][name]['mean_std']['R@10']}")
    args.out.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
