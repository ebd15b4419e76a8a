"""Resident memory of notebook 01's word-probe feature pooling (600 training utterances), as the probe runs it.

    python benchmarks/probe_memory.py                                   # with release_freed_memory (the default)
    MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/probe_memory.py     # glibc's fixed mmap threshold instead

Needs the pocket HuBERT cached under --artifacts (notebook 01 trains it). Prints resident and peak memory after
loading and after pooling; to see the growth without trimming, run it on a checkout before
`speechclip.memory` existed, or comment out the call in `probes._pooled_words`.
"""
import argparse
import resource
from pathlib import Path

import psutil
import torch

from speechclip import load_config, probes
from speechclip.alignments import read_ctm
from speechclip.data import read_split
from speechclip.speech_encoder import load_speech_encoder


def report(what: str) -> None:
    print(f"{what}: resident {psutil.Process().memory_info().rss / 1e9:.2f} GB, "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic_cpu")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--utterances", type=int, default=600)
    args = p.parse_args()
    cfg = load_config("pocket", overrides={"data.root": args.data})
    speech = load_speech_encoder(cfg.speech, pocket_cfg=cfg.pocket_hubert, corpus_root=args.data,
                                 artifacts_dir=args.artifacts)
    torch.set_num_threads(1)  # as word_probe runs
    report("encoder loaded")
    ctm = read_ctm(Path(args.data) / "flickr_8k.ctm")
    rows = probes._pick(read_split(args.data, "train"), ctm, args.utterances, 0)
    hidden, _, _ = probes._pooled_words(speech, rows, ctm)
    report(f"{args.utterances} utterances pooled ({hidden.nbytes / 1e6:.0f} MB of word features)")


if __name__ == "__main__":
    main()
