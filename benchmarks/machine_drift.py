"""How much the machine's own speed moves from minute to minute, seen by the tutorial profile's probe and by a real
stage of the tutorial (the frozen pocket HuBERT over dev utterances, as notebook 10 caches features).

The tutorial's wall time is compared against a 30-minute ceiling, and two from-scratch profiles of nearly the same
code on the same host differed by 1.7 minutes while stages whose code did not change ran 5-22% slower. This script
repeats, back to back for a few minutes on an otherwise idle machine, the profile's fixed two-thread probe
(`tutorial_profile.machine_probe`) and a frozen feature pass, and reports the spread of each and whether the probe
follows the real stage (their correlation).

    python benchmarks/machine_drift.py --minutes 6 --utterances 256 --out benchmarks/machine_drift.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from speechclip import load_config  # noqa: E402
from speechclip.data import build_dataset  # noqa: E402
from speechclip.model import load_backbones  # noqa: E402


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 3), "max": round(max(values), 3), "median": round(statistics.median(values), 3),
            "max_over_min": round(max(values) / min(values), 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "synthetic_cpu"))
    ap.add_argument("--artifacts", default=str(ROOT / "artifacts"))
    ap.add_argument("--utterances", type=int, default=256)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from tutorial_profile import machine_probe  # the profile's own probe, run in a fresh interpreter as there

    torch.set_num_threads(2)
    cfg = load_config("pocket", "parallel", {"data.root": args.data})
    speech, _ = load_backbones(cfg, artifacts_dir=args.artifacts)  # cached pocket backbones; trains none here
    dev = build_dataset(cfg.data, "dev", load_images=False)
    wavs = sorted((dev[i]["wav"] for i in range(min(args.utterances, len(dev)))), key=len, reverse=True)
    batches = [wavs[i:i + 8] for i in range(0, len(wavs), 8)]

    rows, end = [], time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        probe = machine_probe(sys.executable)
        start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                lens = torch.tensor([len(w) for w in batch])
                speech(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), lens)
        rows.append({"t": round(time.time(), 1), "probe_s": probe, "feature_pass_s": round(time.perf_counter() - start, 3)})
        print(rows[-1], flush=True)

    probes, passes = [r["probe_s"] for r in rows], [r["feature_pass_s"] for r in rows]
    result = {"utterances": len(wavs), "repeats": len(rows), "probe": spread(probes),
              "feature_pass": spread(passes),
              "correlation": round(statistics.correlation(probes, passes), 3) if len(rows) > 2 else None,
              "rows": rows, "command": "python benchmarks/machine_drift.py " + " ".join(argv or sys.argv[1:])}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
