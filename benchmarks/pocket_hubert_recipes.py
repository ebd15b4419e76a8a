"""Pocket HuBERT recipes side by side: pretraining wall time, masked-prediction accuracy, and word probes.

The word probe (speechclip.probes.word_probe, as notebook 01 runs it) trains a linear word classifier on the
train split's words and scores it on the test split's words, which are spoken by held-out voices: how well each
layer carries words to voices the model never heard, beside MFCCs. Each run appends one JSON row to --out.

    python benchmarks/pocket_hubert_recipes.py --set pocket_hubert.unmasked_weight=0.5
    python benchmarks/pocket_hubert_recipes.py --set pocket_hubert.steps=600 pocket_hubert.second_iteration_steps=400
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechclip.config import load_config  # noqa: E402
from speechclip.pipeline import parse_overrides  # noqa: E402
from speechclip.pocket import ensure_pocket_hubert, pocket_dir  # noqa: E402
from speechclip.probes import word_probe  # noqa: E402
from speechclip.speech_encoder import load_speech_encoder  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--artifacts", default=str(ROOT / "artifacts"))
    p.add_argument("--probe-train", type=int, default=600)
    p.add_argument("--probe-test", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "pocket_hubert_recipes.jsonl"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config("pocket", "parallel", parse_overrides(args.set))
    root = ROOT / cfg.data.root
    folder = pocket_dir("hubert", cfg.pocket_hubert, root, args.artifacts)
    cached = (folder / "training.json").exists()
    t0 = time.time()
    ensure_pocket_hubert(cfg.pocket_hubert, root, artifacts_dir=args.artifacts)
    info = json.loads((folder / "training.json").read_text())
    curve = np.array([row[2] for row in info["loss_curve"]])
    speech = load_speech_encoder(cfg.speech, pocket_cfg=cfg.pocket_hubert, corpus_root=root,
                                 artifacts_dir=args.artifacts).eval()
    t1 = time.time()
    probe = word_probe(speech, root, args.probe_train, args.probe_test, seed=0)
    row = {"set": args.set, "folder": folder.name, "pretrain_wall_s": info["wall_seconds"],
           "was_cached": cached, "this_run_train_s": round(t1 - t0, 1), "probe_s": round(time.time() - t1, 1),
           "masked_acc_last50": round(float(curve[-50:].mean()), 4),
           "masked_acc_end_of_first_iteration": round(float(curve[cfg.pocket_hubert.steps - 50:
                                                                   cfg.pocket_hubert.steps].mean()), 4),
           "probe": probe, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(row, indent=1))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
