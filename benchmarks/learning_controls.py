"""Controls that isolate where the parallel branch's ceiling comes from (issue: offline tutorial learning).

Trains the parallel branch (CLS + transformer layer(s) + LN + projection, masked InfoNCE) on different inputs that
stand in for the frozen speech features, with everything else equal, and reports dev/test speech->image recall:

    words   the caption's words as frames at their true times ("perfect speech": a fixed random vector per word)
    mfcc    39-dim MFCC + deltas at 50 frames/s (what the pocket HuBERT is pretrained to predict clusters of)
    hubert  the cached pocket HuBERT hidden states (all layers, weighted sum learned)

Usage: python benchmarks/learning_controls.py --input words --pool 4 --minutes 3 [--layers 1 --lr 1e-3 ...]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from speechclip import load_config, pipeline
from speechclip.alignments import read_ctm
from speechclip.data import build_dataset
from speechclip.features import cached_image_embeds
from speechclip.losses import ContrastiveLoss
from speechclip.metrics import mutual_retrieval
from speechclip.parallel import ParallelBranch
from speechclip.speech_encoder import WeightedLayerSum

FPS = 50


def pool_frames(x: torch.Tensor, k: int) -> torch.Tensor:
    """(T, ...) -> (ceil(T/k), ...) average of each run of k frames."""
    if k == 1:
        return x
    T = x.shape[0]
    pad = (-T) % k
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
    return x.reshape(-1, k, *x.shape[1:]).mean(1)


def word_vector(word: str, dim: int, seed: int = 0) -> torch.Tensor:
    """A fixed random vector per word, the same in every split."""
    import zlib
    return torch.randn(dim, generator=torch.Generator().manual_seed(zlib.crc32(word.encode()) + seed))


def word_inputs(ds, ctm, dim: int, seed: int = 0) -> list[torch.Tensor]:
    vocab: dict[str, torch.Tensor] = {}
    out = []
    for u in ds.utterances:
        words = ctm[u.uid]
        T = int(math.ceil(words[-1][2] * FPS)) + 10
        x = torch.zeros(T, dim)
        for w, s, e in words:
            if w not in vocab:
                vocab[w] = word_vector(w, dim, seed)
            x[int(s * FPS): max(int(s * FPS) + 1, int(e * FPS))] = vocab[w]
        out.append(x)
    return out


def mfcc_inputs(ds) -> list[torch.Tensor]:
    from speechclip.pocket_hubert import load_wav, mfcc_many
    return mfcc_many([load_wav(u.wav_path) for u in ds.utterances])


@torch.no_grad()
def hubert_inputs(encoder, ds, batch_size: int = 16) -> list[torch.Tensor]:
    """Pocket HuBERT hidden states (T, L+1, D) per utterance, pooled by the encoder's frame_pool."""
    from speechclip.pocket_hubert import load_wav
    out = [None] * len(ds.utterances)
    order = sorted(range(len(out)), key=lambda i: ds.utterances[i].wav_path.stat().st_size)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        wavs = [load_wav(ds.utterances[i].wav_path) for i in idx]
        hs, lens = encoder(nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([len(w) for w in wavs]))
        for b, i in enumerate(idx):
            out[i] = hs[:, b, : int(lens[b])].transpose(0, 1).half()
    return out


class Branch(nn.Module):
    def __init__(self, d_in, layered, n_states, d_model, out_dim, layers, heads, pos, arch="parallel", norm="none"):
        super().__init__()
        self.arch, self.norm = arch, norm
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, out_dim))
        self.layer_sum = WeightedLayerSum(n_states) if layered else None
        self.inp = nn.Linear(d_in, d_model) if d_in != d_model else nn.Identity()
        self.pos = nn.Parameter(torch.randn(512, d_model) * 0.02) if pos else None
        self.branch = ParallelBranch(d_model, out_dim, heads, layers)

    def forward(self, x, lens):
        if self.layer_sum is not None:
            x = self.layer_sum(x.permute(2, 0, 1, 3))  # (B,T,L,D) -> (L,B,T,D) -> (B,T,D)
        mask = torch.arange(x.shape[1])[None] >= lens[:, None]
        if self.norm == "utt":  # per-utterance mean and variance over real frames, per dimension (CMVN)
            keep = (~mask).float()[..., None]
            mean = (x * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True)
            var = ((x - mean) ** 2 * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True)
            x = (x - mean) / (var + 1e-5).sqrt() * keep
        elif self.norm == "frame":
            x = F.layer_norm(x, x.shape[-1:])
        x = self.inp(x)
        if self.pos is not None:
            x = x + self.pos[: x.shape[1]]
        mask = torch.arange(x.shape[1])[None] >= lens[:, None]
        if self.arch == "meanpool":
            keep = (~mask).float()[..., None]
            return F.normalize(self.mlp((x * keep).sum(1) / keep.sum(1)), dim=-1)
        return self.branch(x, mask)["parallel_embeds"]


def batchify(xs, idx):
    seqs = [xs[i] for i in idx]
    lens = torch.tensor([len(s) for s in seqs])
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True), lens


@torch.no_grad()
def evaluate(model, xs, img, ids, bs=256):
    model.eval()
    embs = [model(*batchify(xs, range(s, min(s + bs, len(xs))))) for s in range(0, len(xs), bs)]
    model.train()
    return mutual_retrieval(torch.cat(embs), img, ids)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", choices=["words", "mfcc", "hubert"], default="words")
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--learn-temp", action="store_true")
    p.add_argument("--temp", type=float, default=0.07)
    p.add_argument("--pos", action="store_true")
    p.add_argument("--arch", choices=["parallel", "meanpool"], default="parallel")
    p.add_argument("--norm", choices=["none", "utt", "frame"], default="none")
    p.add_argument("--tag", default="")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=float, default=60.0, help="seconds")
    p.add_argument("--out", default="artifacts/controls")
    p.add_argument("--inputs-only", action="store_true")
    p.add_argument("--no-test", action="store_true", help="train and dev only (faster to prepare)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides KEY=VALUE (JSON values)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config("pocket", "parallel", {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    clip, exp = None, None
    if args.input == "hubert":  # the pipeline's own cached features (pooled by speech.frame_pool)
        exp = pipeline.prepare(cfg, "artifacts", splits=("train", "dev") if args.no_test else pipeline.SPLITS)
        clip = exp.clip
    elif not args.inputs_only:
        from speechclip.clip_encoder import load_clip
        clip = load_clip(cfg.clip, pocket_cfg=cfg.pocket_clip, corpus_root=cfg.data.root, artifacts_dir="artifacts")
    data = {}
    ctm = read_ctm(Path(cfg.data.root) / "flickr_8k.ctm") if args.input == "words" else None
    cache = Path(args.out) / f"{args.input}-pool{args.pool}.pt"
    if args.input == "hubert":  # read from the pipeline's memory-mapped store, not copied
        cache = Path(args.out) / "none"
    inputs = torch.load(cache) if cache.exists() else {}
    n_cached = len(inputs)
    for split in ("train", "dev") + (() if args.no_test else ("test",)):
        ds = build_dataset(cfg.data, split, load_images=False)
        if split not in inputs:
            xs = {"words": lambda: word_inputs(ds, ctm, 64), "mfcc": lambda: mfcc_inputs(ds),
                  "hubert": lambda: [exp.features[split].store[i] for i in range(len(ds))]}[args.input]()
            inputs[split] = [x.half() for x in xs] if args.input == "hubert" else [
                pool_frames(x.float(), args.pool).half() for x in xs]
        if args.inputs_only:
            continue
        emb, ids = cached_image_embeds(clip, ds, Path("artifacts") / "features", pipeline.backbone_key(cfg, "clip"))
        row = {int(i): r for r, i in enumerate(ids.tolist())}
        img_ids = torch.tensor([u.image_id for u in ds.utterances])
        data[split] = {"x": inputs[split], "img": emb[[row[int(i)] for i in img_ids]], "ids": img_ids}
    if len(inputs) > n_cached and args.input != "hubert":
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(inputs, cache)
    if args.inputs_only:
        return
    for s in data.values():
        s["x"] = [pool_frames(x.float(), args.pool) if args.input == "hubert" else x.float() for x in s["x"]]
    x0 = data["train"]["x"][0]
    layered = x0.dim() == 3
    model = Branch(x0.shape[-1], layered, x0.shape[1] if layered else 0, args.d_model, clip.embed_dim,
                   args.layers, args.heads, args.pos, args.arch, args.norm)
    loss_fn = ContrastiveLoss(args.temp, args.learn_temp)
    params = list(model.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=args.lr, weight_decay=1e-6)
    tr = data["train"]
    n = len(tr["x"])
    g = torch.Generator().manual_seed(0)
    t0, last_eval, step, log = time.perf_counter(), 0.0, 0, []
    budget = args.minutes * 60
    while True:
        el = time.perf_counter() - t0
        if el - last_eval >= args.eval_every or el >= budget or step >= args.max_steps:
            r = evaluate(model, data["dev"]["x"], data["dev"]["img"], data["dev"]["ids"])
            log.append({"step": step, "sec": round(el, 1), "epoch": round(step * args.batch / n, 2),
                        "dev_s2i_R@1": round(r["speech2image_R@1"], 2), "dev_s2i_R@10": round(r["speech2image_R@10"], 2),
                        "scale": round(float(loss_fn.logit_scale), 2)})
            print(json.dumps(log[-1]), flush=True)
            last_eval = time.perf_counter() - t0
            if el >= budget or step >= args.max_steps:
                break
        idx = torch.randint(0, n, (args.batch,), generator=g).tolist()
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for gr in opt.param_groups:
            gr["lr"] = lr
        e = model(*batchify(tr["x"], idx))
        loss = loss_fn(e, tr["img"][idx], tr["ids"][idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 4.0)
        opt.step()
        step += 1
    te = evaluate(model, *(data["test"][k] for k in ("x", "img", "ids"))) if "test" in data else {}
    trn = evaluate(model, tr["x"][:2500], tr["img"][:2500], tr["ids"][:2500])
    res = {"args": vars(args), "steps": step, "utt_per_s": round(step * args.batch / (time.perf_counter() - t0), 1),
           "test": {k: round(v, 2) for k, v in te.items() if k.startswith("speech2image")},
           "train500": round(trn["speech2image_R@1"], 2), "curve": log}
    print(json.dumps(res))
    with open(Path(args.out) / "results.jsonl", "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
