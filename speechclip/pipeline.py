"""From a config to trained, evaluated model: corpus splits, frozen features, fit, test metrics.

The notebooks walk through these steps one cell at a time; this module is the same path as one call, and a
command line for long or GPU runs:

    python -m speechclip.pipeline --preset pocket --family parallel --out artifacts/runs/parallel
    torchrun --nproc_per_node 4 -m speechclip.pipeline --preset base --family parallel --out runs/p \
        --set data.root=data/flickr8k

Under torchrun (one process per GPU) the first process computes the frozen-feature caches while the others wait,
every process then trains its shard of each batch (DDP, `speechclip.train`), and the first one evaluates.
Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from speechclip.config import Config, load_config
from speechclip.data import SEEN_VOICES, SPLITS, build_dataset
from speechclip.evaluation import evaluate
from speechclip.features import FeatureDataset, cached_features, cached_image_embeds, collate_features
from speechclip.model import SpeechCLIP, build_model, load_backbones, load_model
from speechclip.speech_encoder import frozen_autocast
from speechclip.train import dist_info, fit


def backbone_key(cfg: Config, kind: str) -> str:
    """Cache key of a frozen backbone: its config (and the pocket recipe and corpus when it is a pocket one)."""
    d = cfg.to_dict()
    section = d["speech"] if kind == "speech" else d["clip"]
    if section["name"] == "pocket":
        section = {**section, "pocket": d["pocket_hubert" if kind == "speech" else "pocket_clip"],
                   "corpus": str(Path(cfg.data.root).resolve())}
    if kind == "speech":  # the arithmetic "auto" resolves to here (prepare runs the encoder on the CPU)
        section = {**section, "precision": str(frozen_autocast(section["precision"], torch.device("cpu")) or "fp32")}
    if kind == "speech" and cfg.data.normalize_waveform:  # the encoder sees other waveforms (SpeechCLIP+ Base)
        section = {**section, "normalize_waveform": True}  # only when on, so existing caches keep their keys
    return f"{kind}-" + hashlib.sha1(json.dumps(section, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Experiment:
    """Everything a model needs that does not train: backbones, datasets, cached features per split."""

    cfg: Config
    speech_encoder: torch.nn.Module
    clip: torch.nn.Module
    datasets: dict
    features: dict

    def model(self) -> SpeechCLIP:
        return build_model(self.cfg, self.speech_encoder, self.clip)


def prepare(cfg: Config, artifacts: str | Path = "artifacts", splits=SPLITS) -> Experiment:
    """Load backbones, read the corpus, set CLIP's reduced vocabulary, and cache frozen outputs per split.

    The reduced vocabulary comes from the training captions only (pitfall 15: the reference also counted dev
    and test captions, a mild leak into the codebook).
    """
    speech_encoder, clip = load_backbones(cfg, artifacts_dir=artifacts)
    datasets = {s: build_dataset(cfg.data, s, load_images=False) for s in splits}
    clip.set_vocab([u.caption for u in datasets[splits[0]].utterances])
    seen = Path(cfg.data.root) / SEEN_VOICES
    if "test" in splits and (seen / "Flickr8k.token.txt").is_file():
        datasets["test_seen_voices"] = build_dataset(dataclasses.replace(cfg.data, root=str(seen)), "test",
                                                     load_images=False)
    cache = Path(artifacts) / "features"
    features = {}
    for split, ds in datasets.items():
        # images first: a missing or corrupt one raises, or drops its utterances before the speech cache is keyed
        image_embeds, image_ids = cached_image_embeds(clip, ds, cache, backbone_key(cfg, "clip"))
        store = cached_features(speech_encoder, ds, cache, backbone_key(cfg, "speech"))
        features[split] = FeatureDataset(store, ds, image_embeds, image_ids, train=split == "train",
                                         max_seconds=cfg.data.max_audio_seconds, seed=cfg.train.seed)
    return Experiment(cfg, speech_encoder, clip, datasets, features)


def train_and_evaluate(exp: Experiment, out_dir: str | Path, resume: bool = True, progress: bool = True,
                       allow_config_change: bool = False) -> dict:
    """Fit on train (best checkpoint by dev mean R@10), then evaluate that checkpoint on test.

    A resume refuses a checkpoint written with other settings unless allow_config_change=True.
    """
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    model = exp.model()
    state = fit(model, exp.features["train"], exp.features["dev"], exp.cfg, out_dir, collate_features,
                resume=resume, progress=progress, allow_config_change=allow_config_change)
    if dist_info()[0] != 0:  # under torchrun the first process evaluates and writes result.json
        return {"family": exp.cfg.model.family, "steps": state.step, "rank": dist_info()[0]}
    best = load_model(out_dir / "best.pt", exp.speech_encoder, exp.clip)
    metrics = evaluate(best, exp.features["test"], collate_features, exp.cfg.data.eval_batch_size)
    result = {"family": exp.cfg.model.family, "test": metrics, "dev_best": state.best_metrics,
              "steps": state.step, "train_seconds": round(state.wall_seconds, 1),
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    if "test_seen_voices" in exp.features:  # the same test captions in training voices: the new-voice gap
        result["test_seen_voices"] = evaluate(best, exp.features["test_seen_voices"], collate_features,
                                              exp.cfg.data.eval_batch_size, text_retrieval=False)
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _field_annotation(key: str) -> str | None:
    """"train.lr" -> "float"; None for keys that are not a known section.field."""
    section, _, name = key.partition(".")
    part = getattr(Config(), section, None)
    if not dataclasses.is_dataclass(part):
        return None
    return next((f.type for f in dataclasses.fields(part) if f.name == name), None)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Command-line "KEY=VALUE" pairs -> overrides: strings stay strings, other values are read as JSON.

    "data.root=tmp/x" and "train.precision=fp32" are strings because their fields are; "train.lr=1e-3" is a float.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.max_steps=200")
        annotation = _field_annotation(key)
        if annotation == "str":
            out[key] = raw
            continue
        if annotation == "bool" and raw in ("True", "False"):
            raw = raw.lower()
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            if annotation is None:  # not a known key: load_config names it and lists the valid ones
                out[key] = raw
                continue
            raise ValueError(f"--set {pair!r}: {key} takes a {annotation}, and {raw!r} is not one") from None
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="pocket")
    p.add_argument("--family", default="parallel")
    p.add_argument("--out", required=True)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. train.max_steps=200")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume the run in --out even though its checkpoint was written with other settings")
    args = p.parse_args(argv)
    cfg = load_config(args.preset, args.family, parse_overrides(args.set))
    distributed = init_distributed()
    if distributed and dist.get_rank() != 0:
        dist.barrier()  # the first process fills the caches; the others then read them
    exp = prepare(cfg, args.artifacts)
    if distributed and dist.get_rank() == 0:
        dist.barrier()
    result = train_and_evaluate(exp, args.out, allow_config_change=args.allow_config_change)
    if not distributed or dist.get_rank() == 0:
        print(json.dumps(result, indent=2))
    if distributed:
        dist.destroy_process_group()


def init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


if __name__ == "__main__":
    main()
