"""Seconds to run the frozen pocket HuBERT over utterances, per batch size and thread count (feature caching).

    python benchmarks/feature_batch.py --utterances 256 --batch 4 8 16 --threads 2

Runs the encoder as `speechclip.features.compute_features` does (longest first, padded batches) on the first
utterances of the dev split of the `cpu` corpus, without writing anything. Needs the pocket backbones cached under
--artifacts (notebook 01 trains them).
"""
import argparse
import time

import numpy as np
import torch

from speechclip import load_config
from speechclip.data import build_dataset
from speechclip.model import load_backbones


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic_cpu")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--utterances", type=int, default=256)
    p.add_argument("--batch", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    args = p.parse_args()
    cfg = load_config("pocket", "parallel", {"data.root": args.data})
    speech, _ = load_backbones(cfg, artifacts_dir=args.artifacts)
    ds = build_dataset(cfg.data, "dev", load_images=False)
    wavs = [ds[i]["wav"] for i in range(min(args.utterances, len(ds)))]
    order = np.argsort([-len(w) for w in wavs], kind="stable")
    print(f"{len(wavs)} utterances, {sum(len(w) for w in wavs) / 16000:.0f} s of audio")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for bs in args.batch:
            t0 = time.perf_counter()
            with torch.no_grad():
                for start in range(0, len(order), bs):
                    batch = [wavs[i] for i in order[start: start + bs]]
                    lens = torch.tensor([len(w) for w in batch])
                    speech(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), lens)
            print(f"threads {threads}  batch {bs:3d}  {time.perf_counter() - t0:6.2f} s")


if __name__ == "__main__":
    main()
