"""Peak memory of pretraining the pocket HuBERT (data loading, MFCC k-means labels and a few steps).

The steps themselves hold little; the peak comes from the audio and labels, so a short run measures it:

    python benchmarks/pocket_memory.py --steps 30     # prints the process's peak resident memory in GB
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile

import torch

from speechclip import load_config
from speechclip import pocket_hubert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--corpus", default="data/synthetic_cpu")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = dataclasses.replace(load_config("pocket", "parallel").pocket_hubert, steps=args.steps)
    pocket_hubert.train_pocket_hubert(args.corpus, cfg, tempfile.mkdtemp())
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
