"""Generate the synthetic spoken-caption corpus in the Flickr8k Audio Captions layout.

Example: .venv/bin/python data_scripts/make_synthetic_corpus.py --preset cpu --out data/synthetic_cpu
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from speechclip.synth.corpus import CORPUS_PRESETS, make_corpus  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(CORPUS_PRESETS), default="cpu",
                        help="images train/dev/test: " + ", ".join(f"{k} {v}" for k, v in CORPUS_PRESETS.items()))
    parser.add_argument("--out", required=True, help="corpus root to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: number of CPU cores)")
    parser.add_argument("--force", action="store_true", help="replace a synthetic corpus made with another config")
    args = parser.parse_args(argv)
    make_corpus(args.out, preset=args.preset, seed=args.seed, workers=args.workers, force=args.force)


if __name__ == "__main__":
    main()
