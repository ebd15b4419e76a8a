"""Does the parallel branch gain more from distinct training images or from more captions of the same images?

`benchmarks/train_recall.py` found the pocket parallel model 17 R@1 points better on its own training images than
on new images in the same voices. If the gap comes from too few distinct scenes, then at an equal number of training
utterances (and equal steps) a training set spread over more images should reach new images better. This script
trains the pocket parallel recipe (exactly as `speechclip.findings` trains it: same seeds, steps, learning rate,
cached features) on subsets of the training split chosen from the utterance list, nothing re-synthesised:

    images:    N distinct training images, all five captions of each
    captions:  2N images, two or three captions of each (alternating), the same number of utterances

and reports test speech->image recall (new images, held-out voices) and the seen-voice copy for each arm and seed.

    python benchmarks/image_diversity.py --images 750 --seeds 3 --out artifacts/image_diversity
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechclip.config import load_config  # noqa: E402
from speechclip.findings import finished, plain_config, run_one, seed_list  # noqa: E402
from speechclip.pipeline import prepare  # noqa: E402


class Picked(torch.utils.data.Dataset):
    """The chosen utterances of a training FeatureDataset, with the interface the trainer uses."""

    def __init__(self, base, indices: list[int]):
        self.base, self.indices = base, list(indices)
        self.utterances = [base.utterances[i] for i in self.indices]
        self.name = f"{base.name} ({len(self.indices)} utterances picked)"

    seed = property(lambda self: self.base.seed, lambda self, v: setattr(self.base, "seed", v))
    train = property(lambda self: self.base.train)

    def __len__(self) -> int:
        return len(self.indices)

    def lengths(self) -> list[int]:
        every = self.base.lengths()
        return [every[i] for i in self.indices]

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, j: int) -> dict:
        return self.base[self.indices[j]]


def pick(utterances, images: int, per_image) -> list[int]:
    """Indices of the first `images` images' utterances (in order of first appearance), at most per_image(k) of
    the k-th image's captions."""
    order: dict[int, list[int]] = {}
    for i, u in enumerate(utterances):
        order.setdefault(u.image_id, []).append(i)
    chosen = list(order.values())[:images]
    if len(chosen) < images:
        raise ValueError(f"the training split has {len(order)} images; asked for {images}")
    return [i for k, idx in enumerate(chosen) for i in idx[: per_image(k)]]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=750, help="images of the 'images' arm (the other gets twice)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--preset", default="pocket")
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--out", default="artifacts/image_diversity")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    arms = {"images": (args.images, lambda k: 5),
            "captions": (2 * args.images, lambda k: 2 + k % 2)}  # 2.5 captions per image on average
    exp, results = prepare(load_config(args.preset, "parallel"), args.artifacts), {}
    full = exp.features["train"]
    for seed in seed_list(args.seeds):
        cfg = load_config(args.preset, "parallel", {"train.seed": seed})
        for arm, (images, per_image) in arms.items():
            run_dir, picked = out / arm / f"seed{seed}", pick(full.utterances, images, per_image)
            result = finished(run_dir, cfg)
            if result is None:
                exp.features["train"] = Picked(full, picked)
                print(f"[{arm} seed {seed}] {images} images, {len(picked)} utterances", flush=True)
                result = run_one(exp, cfg, run_dir)
                result.pop("seconds")
                exp.features["train"] = full
            n = len(picked)
            results.setdefault(arm, {})[str(seed)] = {
                "images": images, "utterances": n, "steps": result["steps"],
                "test_R@1": result["test"]["speech2image_R@1"], "test_R@10": result["test"]["speech2image_R@10"],
                "seen_voices_R@1": result.get("test_seen_voices", {}).get("speech2image_R@1")}
            print(f"[{arm} seed {seed}] test R@1 {results[arm][str(seed)]['test_R@1']:.2f}", flush=True)
    summary = {arm: {k: {"mean": statistics.fmean(v[k] for v in r.values()),
                         "std": statistics.stdev(v[k] for v in r.values()) if len(r) > 1 else None}
                     for k in ("test_R@1", "test_R@10", "seen_voices_R@1")}
               for arm, r in results.items()}
    report = {"command": "python benchmarks/image_diversity.py " + " ".join(argv or sys.argv[1:]),
              "config": plain_config(load_config(args.preset, "parallel")), "runs": results, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_diversity.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
