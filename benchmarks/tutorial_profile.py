"""Profile the offline tutorial stage by stage: wall time and peak memory of each step of `make tutorial`.

Runs exactly what `make tutorial` runs (the corpus, then every notebook through papermill), each stage under
/usr/bin/time, then reads the finer timings the notebooks and the pocket backbones record (pocket training,
feature caching, each model's training) and writes a table into benchmarks/README.md and the raw numbers into
benchmarks/tutorial_profile.json.

    python benchmarks/tutorial_profile.py            # from scratch: removes the corpus and every artifact first
    python benchmarks/tutorial_profile.py --keep     # reuse what is already built (times only what is missing)
    python benchmarks/tutorial_profile.py --only 01_backbones   # one stage again on what is built; prints, writes
                                                                # artifacts/profile/only.json, leaves the README
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


def _tree_memory(proc, pss: bool = True) -> tuple[int, int]:
    """Resident and proportional bytes of a process and all its descendants (a notebook's kernel, a backbone
    trained beside it). Summed RSS counts the pages the processes share (the torch libraries, about 0.3-0.6 GB
    each) once per process; summed PSS splits each shared page among its users, so it is what they take together.
    """
    import psutil

    rss = proportional = 0
    try:
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                info = p.memory_full_info() if pss else p.memory_info()
                rss += info.rss
                proportional += getattr(info, "pss", 0)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return rss, proportional


def timed(cmd: list[str], log: Path) -> dict:
    """Run cmd under GNU time: wall seconds; peak resident memory of the largest process of the stage (GNU time);
    and the peak of all the stage's processes together, sampled every 0.2 s (notebook 01 trains its two pocket
    backbones in two processes at once), as summed RSS (every 0.2 s) and as summed PSS (shared pages split among
    their users, every 2 s)."""
    t0, together, together_pss = time.perf_counter(), 0, 0
    with open(log, "w") as fh:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT)
        tick = 0
        while proc.poll() is None:
            # PSS walks every mapping of every process (/proc/PID/smaps_rollup): every 2 s only. With it read every
            # 0.2 s notebook 01 took 681 s against 613 s without (one run each); RSS is cheap: every 0.2 s
            rss, pss = _tree_memory(proc, pss=tick % 10 == 0)
            together, together_pss = max(together, rss), max(together_pss, pss)
            tick += 1
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    peak = re.findall(r"PEAK_KB (\d+)", text)
    if proc.returncode:
        sys.exit(f"stage failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return {"seconds": round(wall, 1), "peak_gb": round(int(peak[-1]) / 1e6, 2) if peak else None,
            "peak_all_gb": round(together / 1e9, 2), "peak_all_pss_gb": round(together_pss / 1e9, 2)}


PROBE = """
import time, torch
torch.set_num_threads(2)
torch.manual_seed(0)
x, w = torch.randn(512, 768), torch.randn(768, 768)
conv, audio = torch.nn.Conv1d(1, 256, 10, stride=5), torch.randn(8, 1, 16000)
best = float("inf")
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(40):
        y = torch.nn.functional.gelu(x @ w)
    with torch.no_grad():
        for _ in range(4):
            conv(audio)
    best = min(best, time.perf_counter() - t0)
print(best)
"""


def machine_probe(py: str) -> float:
    """Seconds of a fixed two-thread torch workload (matmuls, GELU, a strided convolution), best of five: the
    machine's speed at the time. Profiles of different days are comparable only through it (the same code has run
    1.2-1.5x slower on some days)."""
    return round(float(subprocess.run([py, "-c", PROBE], capture_output=True, text=True, check=True).stdout), 3)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def details(preset: str) -> dict:
    """Finer timings recorded by the runs themselves."""
    out = {}
    for kind in ("hubert", "clip"):
        for folder in sorted((ROOT / "artifacts" / "pocket").glob(f"{kind}-*")):
            out[f"pocket {kind} training"] = read_json(folder / "training.json").get("wall_seconds")
    for path in sorted((ROOT / "artifacts" / "metrics").glob("*.json")):
        wall = read_json(path).get("wall_seconds", {})
        for k, v in (wall.items() if isinstance(wall, dict) else ()):
            out[f"{path.stem}: {k}"] = v
    return out


def write_readme(result: dict) -> None:
    rows = ["| stage | wall time | peak memory, largest process | peak memory, all processes (summed RSS) | "
            "all processes (summed PSS) |", "|---|---|---|---|---|"]
    for name, r in result["stages"].items():
        rows.append(f"| {name} | {r['seconds'] / 60:.1f} min ({r['seconds']:.0f} s) | {r['peak_gb']} GB | "
                    f"{r.get('peak_all_gb', '—')} GB | {r.get('peak_all_pss_gb', '—')} GB |")
    total = sum(r["seconds"] for r in result["stages"].values())
    peak = max(r["peak_gb"] or 0 for r in result["stages"].values())
    peak_all = max(r.get("peak_all_gb") or 0 for r in result["stages"].values())
    peak_pss = max(r.get("peak_all_pss_gb") or 0 for r in result["stages"].values())
    rows.append(f"| **total** | **{total / 60:.1f} min** | **{peak} GB** | **{peak_all} GB** | **{peak_pss} GB** |")
    rows += ["", "Recorded inside the stages (seconds; the two pocket backbones train at the same time, one in a",
             "second process):", "", "| step | seconds |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in result["details"].items() if v is not None]
    rows += ["", f"Measured {result['date']} on {result['machine']}; `{result['command']}`."]
    if result.get("machine_probe_seconds"):
        probe = result["machine_probe_seconds"]
        rows += ["", f"Machine speed at the time (`machine_probe`, a fixed two-thread torch workload, lower is "
                     f"faster): {probe['before']} s before the stages, {probe['after']} s after."]
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
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="profile only these notebooks (stems), on what is built")
    args = p.parse_args()
    py = str(ROOT / ".venv" / "bin" / "python")
    if args.only:
        logs = ROOT / "artifacts" / "profile"
        logs.mkdir(parents=True, exist_ok=True)
        stages, probe_before = {}, machine_probe(py)
        for stem in args.only:
            nb = ROOT / "notebooks" / f"{stem}.ipynb"
            stages[f"notebook {stem}"] = timed(
                [py, "-m", "papermill", "--cwd", "notebooks", "-p", "DATA_DIR", f"../data/synthetic_{args.preset}",
                 str(nb.relative_to(ROOT)), f"artifacts/runs/{nb.name}"], logs / f"{stem}.log")
            print(stem, stages[f"notebook {stem}"], flush=True)
        (logs / "only.json").write_text(json.dumps({"stages": stages, "details": details(args.preset),
                                                    "machine_probe_seconds": {"before": probe_before,
                                                                              "after": machine_probe(py)}}, indent=1))
        return
    if not args.keep:
        for path in (ROOT / "data" / f"synthetic_{args.preset}", ROOT / "artifacts"):
            shutil.rmtree(path, ignore_errors=True)
    logs = ROOT / "artifacts" / "profile"
    logs.mkdir(parents=True, exist_ok=True)
    (ROOT / "artifacts" / "runs").mkdir(parents=True, exist_ok=True)
    probe_before = machine_probe(py)
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
              "machine_probe_seconds": {"before": probe_before, "after": machine_probe(py)},
              "command": "python benchmarks/tutorial_profile.py" + (" --keep" if args.keep else "")}
    (ROOT / "benchmarks" / "tutorial_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    write_readme(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
