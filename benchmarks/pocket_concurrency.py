"""Train the two pocket backbones one after the other with two threads, or side by side with one thread each.

    python benchmarks/pocket_concurrency.py --hubert-steps 40 --clip-epochs 2     # a balanced pair, about a minute
    python benchmarks/pocket_concurrency.py --threads-only                        # each alone, with 1 and 2 threads

Short runs of the real recipes (`train_pocket_hubert`, `train_pocket_clip`) on the `cpu` corpus into temporary
folders; the seconds printed are each training's own (imports and process start excluded). Notebook 01 uses the
side-by-side arrangement (`speechclip.pocket.train_in_background`).
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time

import torch


def train(kind: str, threads: int, steps: int, epochs: int, corpus: str) -> float:
    from speechclip import load_config
    from speechclip.pocket_clip import train_pocket_clip
    from speechclip.pocket_hubert import train_pocket_hubert

    torch.set_num_threads(threads)
    cfg = load_config("pocket", "parallel", {"data.root": corpus})
    t0 = time.perf_counter()
    if kind == "clip":
        train_pocket_clip(corpus, dataclasses.replace(cfg.pocket_clip, epochs=epochs), tempfile.mkdtemp())
    else:
        train_pocket_hubert(corpus, dataclasses.replace(cfg.pocket_hubert, steps=steps), tempfile.mkdtemp())
    return time.perf_counter() - t0


def child(kind: str, threads: int, args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", kind, "--threads", str(threads), "--hubert-steps",
                             str(args.hubert_steps), "--clip-epochs", str(args.clip_epochs), "--corpus", args.corpus],
                            stdout=subprocess.PIPE, text=True)


def seconds(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    return float(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hubert-steps", type=int, default=40)
    p.add_argument("--clip-epochs", type=int, default=2)
    p.add_argument("--corpus", default="data/synthetic_cpu")
    p.add_argument("--threads-only", action="store_true")
    p.add_argument("--child", choices=["hubert", "clip"], help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(train(args.child, args.threads, args.hubert_steps, args.clip_epochs, args.corpus), flush=True)
        return
    if args.threads_only:
        for kind in ("hubert", "clip"):
            for threads in (1, 2):
                print(f"{kind} alone, {threads} thread(s): {seconds(child(kind, threads, args)):.1f} s", flush=True)
        return
    one = {kind: seconds(child(kind, 2, args)) for kind in ("hubert", "clip")}
    print(f"one after the other, 2 threads: hubert {one['hubert']:.1f} s + clip {one['clip']:.1f} s = "
          f"{sum(one.values()):.1f} s", flush=True)
    procs = {kind: child(kind, 1, args) for kind in ("hubert", "clip")}
    both = {kind: seconds(proc) for kind, proc in procs.items()}
    print(f"side by side, 1 thread each: hubert {both['hubert']:.1f} s, clip {both['clip']:.1f} s -> "
          f"{max(both.values()):.1f} s", flush=True)


if __name__ == "__main__":
    main()
