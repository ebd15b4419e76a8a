"""Today's pocket path against the fast one, in one run: training throughput and dev recall after a fixed wall time.

Both arms use the project's own pipeline and trainer (`pipeline.prepare`, `Trainer.train_step`, `evaluate`) on the
same corpus, backbones, seed and optimiser; only the levers differ:

    before  50 Hz cached HuBERT frames, no feature normalisation (the preset before this change)
    after   4 frames averaged (speech.frame_pool = 4, 12.5 Hz) and per-utterance normalisation (model.feature_norm)

Each arm trains parallel SpeechCLIP for --minutes of wall time at a constant learning rate after warmup, then
evaluates speech->image recall on the dev split. Feature caches are built first and not timed.

    python benchmarks/fast_path.py --minutes 3
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from speechclip import load_config, pipeline
from speechclip.evaluation import evaluate
from speechclip.features import collate_features
from speechclip.train import Trainer, seed_everything

ARMS = {"before": {"speech.frame_pool": 1, "model.feature_norm": "none"},
        "after": {"speech.frame_pool": 4, "model.feature_norm": "utterance"}}


def run_arm(name: str, minutes: float, out: Path) -> dict:
    cfg = load_config("pocket", "parallel", {**ARMS[name], "train.max_steps": 1_000_000})  # lr flat after warmup
    exp = pipeline.prepare(cfg, "artifacts", splits=("train", "dev"))
    seed_everything(cfg.train.seed)
    model = exp.model()
    trainer = Trainer(model, exp.features["train"], exp.features["dev"], cfg, out / name, collate_features,
                      progress=False)
    steps, utts, t0, epoch = 0, 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < minutes * 60:
        trainer.sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(exp.features["train"], batch_sampler=list(trainer.sampler),
                                             collate_fn=collate_features)
        for batch in loader:
            trainer.train_step(batch)
            steps, utts = steps + 1, utts + len(batch["feat_lens"])
            if time.perf_counter() - t0 >= minutes * 60:
                break
        epoch += 1
    seconds = time.perf_counter() - t0
    dev = evaluate(model, exp.features["dev"], collate_features, cfg.data.eval_batch_size, text_retrieval=False)
    return {"arm": name, "levers": ARMS[name], "train_seconds": round(seconds, 1), "steps": steps,
            "epochs": round(utts / len(exp.features["train"]), 2), "utterances_per_second": round(utts / seconds, 1),
            "seconds_per_step": round(seconds / steps, 3),
            "dev": {k: round(v, 2) for k, v in dev.items() if k.startswith(("speech2image", "image2speech"))}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--out", default="artifacts/fast_path")
    args = p.parse_args()
    results = [run_arm(name, args.minutes, Path(args.out)) for name in ARMS]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
