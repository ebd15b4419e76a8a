"""Seconds to run the frozen pocket HuBERT over utterances, per batch size and thread count (feature caching).

    python benchmarks/feature_batch.py --utterances 256 --batch 4 8 16 --threads 2
    python benchmarks/feature_batch.py --utterances 640 --batch 8 --precision fp32 auto   # speech.precision

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
from speechclip.pipeline import parse_overrides
from speechclip.model import load_backbones
from speechclip.speech_encoder import frozen_autocast


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic_cpu")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--utterances", type=int, default=256)
    p.add_argument("--batch", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. pocket_hubert.steps=1000 (to pick a cached pocket HuBERT)")
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                   help="speech.precision values to time; with more than one, also how far each is from the first")
    args = p.parse_args()
    cfg = load_config("pocket", "parallel", {"data.root": args.data, **parse_overrides(args.set)})
    speech, _ = load_backbones(cfg, artifacts_dir=args.artifacts)
    ds = build_dataset(cfg.data, "dev", load_images=False)
    wavs = [ds[i]["wav"] for i in range(min(args.utterances, len(ds)))]
    order = np.argsort([-len(w) for w in wavs], kind="stable")
    print(f"{len(wavs)} utterances, {sum(len(w) for w in wavs) / 16000:.0f} s of audio")
    first = {}
    for precision in args.precision:
        speech.precision = precision
        for threads in args.threads:
            torch.set_num_threads(threads)
            for bs in args.batch:
                t0, outs = time.perf_counter(), []
                with torch.no_grad():
                    for start in range(0, len(order), bs):
                        batch = [wavs[i] for i in order[start: start + bs]]
                        lens = torch.tensor([len(w) for w in batch])
                        hs, feat_lens = speech(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), lens)
                        outs += [hs[:, b, :n] for b, n in enumerate(feat_lens.tolist())]
                seconds = time.perf_counter() - t0
                dtype = frozen_autocast(precision, torch.device("cpu")) or torch.float32
                line = f"{precision:5s} ({str(dtype).split('.')[-1]})  threads {threads}  batch {bs:3d}  {seconds:6.2f} s"
                key = (threads, bs)
                if key in first:  # relative distance of every hidden state from the first precision's, per layer
                    ref = first[key]
                    rel = [float(sum((o[k] - r[k]).norm() ** 2 for o, r in zip(outs, ref)) ** 0.5
                                 / sum(r[k].norm() ** 2 for r in ref) ** 0.5) for k in range(ref[0].shape[0])]
                    line += "  relative distance per hidden state: " + " ".join(f"{r:.4f}" for r in rel)
                else:
                    first[key] = outs
                print(line, flush=True)


if __name__ == "__main__":
    main()
