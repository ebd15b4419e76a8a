"""Profile the offline tutorial stage by stage: wall time and peak memory of each step of `make tutorial`.

Runs exactly what `make tutorial` runs (the corpus, then every notebook through papermill), each stage under
/usr/bin/time, then reads the finer timings the notebooks and the pocket backbones record (pocket training,
feature caching, each model's training) and writes a table into benchmarks/README.md and the raw numbers into
benchmarks/tutorial_profile.json.

    python benchmarks/tutorial_profile.py            # from scratch: removes the corpus and every artifact first
    python benchmarks/tutorial_profile.py --keep     # reuse what is already built (times only what is missing)
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- tutorial-profile:start -->", "<!-- tutorial-profile:end -->"


def timed(cmd: list[str], log: Path) -> dict:
    """Run cmd under GNU time; wall seconds and peak resident memory (the largest process of the stage)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    peak = re.findall(r"PEAK_KB (\d+)", text)
    if proc.returncode:
        sys.exit(f"stage failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return {"seconds": round(wall, 1), "peak_gb": round(int(peak[-1]) / 1e6, 2) if peak else None}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def details(preset: str) -> dict:
    """Finer timings recorded by the runs themselves."""
    out = {}
    for kind in ("hubert", "clip"):
        for folder in sorted((ROOT / "artifacts" / "pocket").glob(f"{kind}-*")):
            out[f"pocket {kind} training"] = read_json(folder / "training.json").get("wall_seconds")
    for nb in ("10_parallel", "11_cascaded", "20_cif"):
        wall = read_json(ROOT / "artifacts" / "metrics" / f"{nb}.json").get("wall_seconds", {})
        for k, v in wall.items():
            out[f"{nb}: {k}"] = v
    return out


def write_readme(result: dict) -> None:
    rows = ["| stage | wall time | peak memory |", "|---|---|---|"]
    for name, r in result["stages"].items():
        rows.append(f"| {name} | {r['seconds'] / 60:.1f} min ({r['seconds']:.0f} s) | {r['peak_gb']} GB |")
    total = sum(r["seconds"] for r in result["stages"].values())
    peak = max(r["peak_gb"] or 0 for r in result["stages"].values())
    rows.append(f"| **total** | **{total / 60:.1f} min** | **{peak} GB** |")
    rows += ["", "Recorded inside the stages (seconds):", "", "| step | seconds |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in result["details"].items() if v is not None]
    rows += ["", f"Measured {result['date']} on {result['machine']}; `{result['command']}`."]
    readme = ROOT / "benchmarks" / "README.md"
    text = readme.read_text()
    block = f"{START}\n" + "\n".join(rows) + f"\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text += "\n## Offline tutorial profile (`benchmarks/tutorial_profile.py`)\n\n" + block + "\n"
    readme.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", help="corpus preset, as `make tutorial CORPUS_PRESET=...`")
    p.add_argument("--keep", action="store_true", help="keep the corpus and artifacts already built")
    args = p.parse_args()
    py = str(ROOT / ".venv" / "bin" / "python")
    if not args.keep:
        for path in (ROOT / "data" / f"synthetic_{args.preset}", ROOT / "artifacts"):
            shutil.rmtree(path, ignore_errors=True)
    logs = ROOT / "artifacts" / "profile"
    logs.mkdir(parents=True, exist_ok=True)
    (ROOT / "artifacts" / "runs").mkdir(parents=True, exist_ok=True)
    stages = {"corpus": timed([py, "data_scripts/make_synthetic_corpus.py", "--preset", args.preset, "--out",
                               f"data/synthetic_{args.preset}"], logs / "corpus.log")}
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        stages[f"notebook {nb.stem}"] = timed(
            [py, "-m", "papermill", "--cwd", "notebooks", "-p", "DATA_DIR", f"../data/synthetic_{args.preset}",
             str(nb.relative_to(ROOT)), f"artifacts/runs/{nb.name}"],
            logs / f"{nb.stem}.log")
        print(nb.stem, stages[f"notebook {nb.stem}"], flush=True)
    import platform
    import os
    result = {"stages": stages, "details": details(args.preset), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{os.cpu_count()} cores, {platform.machine()}",
              "command": "python benchmarks/tutorial_profile.py" + (" --keep" if args.keep else "")}
    (ROOT / "benchmarks" / "tutorial_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    write_readme(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
