"""What a training run spends besides learning: a training step, a batch read, a dev validation, per family.

Runs on the tutorial's cached features and pocket backbones (run the tutorial, or at least notebook 10, first), with
the project's public API only, so the same file measures any commit:

    python benchmarks/step_costs.py                       # every family; prints a table and writes step_costs.json
    python benchmarks/step_costs.py --families parallel cascaded --steps 45

A step is forward, backward and Adam on a batch of 64 (the batches read beforehand, so the step alone is timed);
a batch read is the DataLoader's fetch of 64 cached utterances; a validation is `evaluate` on the dev split without
text retrieval, as `fit` runs it after every epoch. Two threads, as the tutorial's kernels use.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from speechclip import load_config, pipeline
from speechclip.data import LengthBucketSampler
from speechclip.evaluation import evaluate
from speechclip.features import collate_features

FAMILIES = ("parallel", "cascaded", "cascaded_plus", "hybrid", "hybrid_plus")


def measure(family: str, steps: int, data_dir: str, artifacts: str) -> dict:
    cfg = load_config("pocket", family, {"data.root": data_dir})
    exp = pipeline.prepare(cfg, artifacts)
    train = exp.features["train"]
    batches = list(LengthBucketSampler(train.lengths(), cfg.data.batch_size, shuffle=True, drop_last=True,
                                       seed=1))[: steps + 5]
    loader = torch.utils.data.DataLoader(train, batch_sampler=batches, collate_fn=collate_features)
    t0 = time.perf_counter()
    data = list(loader)
    read_ms = 1000 * (time.perf_counter() - t0) / len(data)
    torch.manual_seed(0)
    model = exp.model().train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        out = model(batch, step=10_000)  # past CIF's early rescaling, as most of a run is
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    for batch in data[:5]:  # warm-up
        step(batch)
    t0 = time.perf_counter()
    for batch in data[5:]:
        step(batch)
    step_ms = 1000 * (time.perf_counter() - t0) / (len(data) - 5)
    seconds = []
    for _ in range(2):  # the second pass is the one reported (the first fills caches)
        t0 = time.perf_counter()
        evaluate(model, exp.features["dev"], collate_features, cfg.data.eval_batch_size, text_retrieval=False)
        seconds.append(time.perf_counter() - t0)
    return {"step_ms": round(step_ms, 1), "batch_read_ms": round(read_ms, 1), "validation_s": round(seconds[-1], 2),
            "dev_utterances": len(exp.features["dev"]), "steps_timed": len(data) - 5}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--steps", type=int, default=45)
    p.add_argument("--data-dir", default="data/synthetic_cpu")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("step_costs.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    rows = {f: measure(f, args.steps, args.data_dir, args.artifacts) for f in args.families}
    print(f"{'family':<14} {'step ms':>8} {'batch read ms':>14} {'validation s':>13}")
    for f, r in rows.items():
        print(f"{f:<14} {r['step_ms']:>8} {r['batch_read_ms']:>14} {r['validation_s']:>13}")
    args.out.write_text(json.dumps({"families": rows, "threads": 2}, indent=1) + "\n")


if __name__ == "__main__":
    main()
