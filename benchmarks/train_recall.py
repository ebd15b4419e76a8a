"""Does a trained model remember its training images better than it reaches new ones? Speech->image recall of a
checkpoint on a pool of training images (their captions in training voices) beside the dev and test pools.

A model that underfits scores about as well on training images as on new ones; one that memorises scores far
higher on them. The pools are made the same size as the test split's (500 images by default), since recall falls
with the pool.

    python benchmarks/train_recall.py --checkpoint artifacts/findings/parallel/seed7122/best.pt --preset pocket
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechclip.config import load_config  # noqa: E402
from speechclip.evaluation import evaluate  # noqa: E402
from speechclip.features import FeatureDataset, collate_features  # noqa: E402
from speechclip.model import load_model  # noqa: E402
from speechclip.pipeline import prepare  # noqa: E402


def image_pool(features: FeatureDataset, images: int) -> torch.utils.data.Subset:
    """The utterances of the split's first `images` images (in the order of first appearance)."""
    first: dict[int, None] = {}
    for u in features.utterances:
        if len(first) < images:
            first.setdefault(u.image_id)
    keep = [i for i, u in enumerate(features.utterances) if u.image_id in first]
    return torch.utils.data.Subset(features, keep)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--preset", default="pocket")
    ap.add_argument("--family", default="parallel")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.preset, family=args.family)
    exp = prepare(cfg, args.artifacts)
    model = load_model(args.checkpoint, exp.speech_encoder, exp.clip)
    train = exp.features["train"]
    train_eval = FeatureDataset(train.store, exp.datasets["train"], train.image_embeds,
                                torch.tensor(list(train.row_of)), train=False)  # whole utterances, no crops
    rows = {}
    for name, ds in (("train", image_pool(train_eval, args.images)), ("dev", exp.features["dev"]),
                     ("test", exp.features["test"]), ("test_seen_voices", exp.features.get("test_seen_voices"))):
        if ds is None:
            continue
        m = evaluate(model, ds, collate_features, cfg.data.eval_batch_size, text_retrieval=False)
        images = len({ds.dataset.utterances[i].image_id for i in ds.indices} if isinstance(ds, torch.utils.data.Subset)
                     else {u.image_id for u in ds.utterances})
        rows[name] = {"images": images, **{k: round(m[k], 2) for k in
                                           ("speech2image_R@1", "speech2image_R@5", "speech2image_R@10", "loss")}}
        print(name, json.dumps(rows[name]))
    print(json.dumps({"checkpoint": args.checkpoint, "pools": rows}, indent=1))


if __name__ == "__main__":
    main()
