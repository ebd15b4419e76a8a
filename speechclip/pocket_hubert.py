"""A pocket-size HuBERT pretrained here with HuBERT's first iteration: MFCC k-means targets, masked prediction.

Hsu et al. 2021 (HuBERT) §II; used as the offline stand-in for §1.1; introduced in notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from tqdm.auto import tqdm
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from speechclip.data import read_split
from speechclip import cpu
from speechclip.cpu import reclaim_threads

__all__ = ["hubert_config", "mfcc_features", "mfcc_many", "span_mask", "MaskedPredictionHead", "train_pocket_hubert"]

FRAME = 320  # samples per frame at 16 kHz: 50 Hz, HuBERT's rate
WINDOW = 400  # receptive field of the conv front-end (25 ms), also the MFCC window, so frame i aligns exactly


def hubert_config(cfg) -> HubertConfig:
    """HubertConfig for the pocket sizes: LayerNorm convs (padding-exact batching), post-LN encoder like Base."""
    return HubertConfig(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, conv_dim=list(cfg.conv_dim), conv_kernel=list(cfg.conv_kernel),
        conv_stride=list(cfg.conv_stride), num_feat_extract_layers=len(cfg.conv_dim), feat_extract_norm="layer",
        do_stable_layer_norm=False, conv_bias=True,
        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=16,  # 0.64 s context: utterances are short
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0,  # an underfitting 1-minute model gains nothing from dropout
        mask_time_prob=cfg.mask_prob, mask_time_length=cfg.mask_length)  # mask_time_prob > 0 creates the mask embedding


_MFCC = torchaudio.transforms.MFCC(16000, n_mfcc=13, melkwargs=dict(
    n_fft=WINDOW, win_length=WINDOW, hop_length=FRAME, center=False, n_mels=40))  # frame i = samples [320i, 320i+400)


def _deltas(x: torch.Tensor) -> torch.Tensor:
    """(T, F) regression deltas over +-2 frames with edge replication (HTK/Kaldi formula)."""
    p = torch.cat([x[:1], x[:1], x, x[-1:], x[-1:]])
    return (2 * (p[4:] - p[:-4]) + (p[3:-1] - p[1:-3])) / 10


def mfcc_features(wav: torch.Tensor) -> torch.Tensor:
    """(S,) waveform -> (T, 39) MFCC + deltas + delta-deltas at 50 Hz, mean/variance-normalised per utterance."""
    return _finish_mfcc(_MFCC(wav).T)


def _finish_mfcc(mfcc: torch.Tensor) -> torch.Tensor:
    d1 = _deltas(mfcc)
    feats = torch.cat([mfcc, d1, _deltas(d1)], dim=1)  # (T, 39)
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)


def mfcc_many(wavs: list, chunk: int = 64) -> list:
    """mfcc_features for many utterances, batched by similar length (same frames; much faster on CPU)."""
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    out = [None] * len(wavs)
    for s in range(0, len(order), chunk):
        idx = order[s:s + chunk]
        batch = nn.utils.rnn.pad_sequence([_as_float(wavs[i]) for i in idx], batch_first=True)
        mfcc = _MFCC(batch).transpose(1, 2)  # (B, T_max, 13); frames past an utterance's end are dropped below
        for b, i in enumerate(idx):
            out[i] = _finish_mfcc(mfcc[b, :(len(wavs[i]) - WINDOW) // FRAME + 1])
    return out


def span_mask(batch: int, frames: int, prob: float, length: int, gen: torch.Generator) -> torch.Tensor:
    """(B, T) bool: round(prob * T) random span starts per utterance, each masking ``length`` frames (HuBERT)."""
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    n_spans = max(1, round(prob * frames))
    for b in range(batch):
        starts = torch.randint(0, max(1, frames - length + 1), (n_spans,), generator=gen)
        for s in starts.tolist():
            mask[b, s:s + length] = True
    return mask


class MaskedPredictionHead(nn.Module):
    """HuBERT's target head: logits_c = cos(W h_t, e_c) / 0.1 over the cluster label embeddings e_c."""

    def __init__(self, hidden_size: int, num_clusters: int, final_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(hidden_size, final_dim)
        self.label_embeds = nn.Parameter(torch.randn(num_clusters, final_dim) * 0.1)
        self.temperature = temperature

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(h), dim=-1) @ F.normalize(self.label_embeds, dim=-1).T / self.temperature


def _as_float(wav: torch.Tensor) -> torch.Tensor:
    return wav.float() / 32768 if wav.dtype == torch.int16 else wav


def _load_pcm16(path) -> torch.Tensor:
    """(S,) int16 samples: the training audio stays in memory at half the size of float32."""
    wav, sr = sf.read(str(path), dtype="int16", always_2d=True)
    if sr != 16000:
        raise ValueError(f"{path}: expected 16 kHz audio, got {sr} Hz")
    return torch.from_numpy(wav[:, 0].copy())


def load_wav(path) -> torch.Tensor:
    """(S,) float32 samples of a 16 kHz wav, channels averaged."""
    wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != 16000:
        raise ValueError(f"{path}: expected 16 kHz audio, got {sr} Hz")
    return torch.from_numpy(wav if wav.ndim == 1 else wav.mean(1))


def _fit_kmeans(wavs: list, num_clusters: int, seed: int, max_frames: int = 60000) -> tuple:
    """k-means on MFCC frames of a sample of utterances; returns (centers (C, 39), info dict)."""
    from sklearn.cluster import MiniBatchKMeans
    feats = torch.cat(mfcc_many(wavs)).numpy()
    rng = np.random.default_rng(seed)
    sample = feats[rng.permutation(len(feats))[:max_frames]]
    km = MiniBatchKMeans(num_clusters, random_state=seed, batch_size=4096, n_init=3, max_iter=100).fit(sample)
    info = {"frames": int(len(sample)), "inertia_per_frame": float(km.inertia_ / len(sample)),
            "clusters": num_clusters}
    return torch.from_numpy(km.cluster_centers_).float(), info


def _labels(paths: list, centers: torch.Tensor, chunk: int = 512) -> list:
    """(T,) nearest-centre MFCC cluster ids at 50 Hz for each utterance, reading the audio a chunk at a time."""
    out = []
    for s in range(0, len(paths), chunk):
        out += [torch.cdist(f, centers).argmin(-1) for f in mfcc_many([_load_pcm16(p) for p in paths[s:s + chunk]])]
    return out


def _batch(paths, labels, cfg, gen) -> tuple:
    """Random crops cut to the shortest utterance in the batch (fairseq HuBERT: no padding), frame-aligned.

    Crops are read from the wav files, so the training audio never sits in memory (it is in the page cache).
    """
    idx = torch.randint(0, len(paths), (cfg.batch_size,), generator=gen).tolist()
    factors = [1.0] * len(idx)
    if cfg.speed_perturb:  # Kaldi-style speed perturbation: each crop at 1.0 or one of the listed speeds
        choices = [1.0] + [p / 100 for p in cfg.speed_perturb]
        factors = [choices[int(k)] for k in torch.randint(0, len(choices), (len(idx),), generator=gen)]
    frames = min(int(cfg.max_seconds * 16000) // FRAME, min(int(len(labels[i]) / f) for i, f in zip(idx, factors)))
    if frames >= cfg.mask_length + 1 + cfg.crop_multiple:  # a few repeated shapes: oneDNN reuses its kernels
        frames -= frames % cfg.crop_multiple
    crops, targets = [], []
    for i, factor in zip(idx, factors):
        source = frames if factor == 1.0 else math.ceil(frames * factor)  # original frames the crop covers
        f0 = int(torch.randint(0, len(labels[i]) - source + 1, (1,), generator=gen))
        wav, target = _crop(paths[i], labels[i], f0, frames, source, factor)
        crops.append(wav)
        targets.append(target)
    return torch.stack(crops), torch.stack(targets)


def _crop(path, labels, f0: int, frames: int, source: int, factor: float) -> tuple:
    """`frames` frames of audio from frame f0, played `factor` times faster, and the cluster ids they carry."""
    start = f0 * FRAME
    pcm, _ = sf.read(str(path), start=start, stop=start + (source - 1) * FRAME + WINDOW, dtype="int16",
                     always_2d=True)
    wav = _as_float(torch.from_numpy(pcm[:, 0].copy()))
    if factor == 1.0:
        return wav, labels[f0:f0 + frames]
    # read as if sampled at 16 kHz * factor and resampled to 16 kHz: shorter (or longer) and higher (or lower)
    wav = torchaudio.functional.resample(wav, orig_freq=round(16000 * factor), new_freq=16000)
    need = (frames - 1) * FRAME + WINDOW
    wav = F.pad(wav, (0, max(0, need - len(wav))))[:need]
    source_frame = (f0 + torch.arange(frames) * factor).long().clamp(max=len(labels) - 1)
    return wav, labels[source_frame]


def pretraining_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of pretraining (pocket_hubert.precision) on this device; None = plain fp32.

    "auto" is bf16 on a CPU with bf16 in hardware (a pocket HuBERT step 1.2x faster on one thread of the tutorial
    machine, 1.4x on two; `benchmarks/README.md`) and fp32 elsewhere, where bf16 is emulated (slower) or not
    needed (a GPU pretrains the pocket HuBERT in a minute or two).
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu.cpu_has_native_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16}[precision]


def _step_loss(model, head, wavs, targets, cfg, gen, dtype=None) -> tuple:
    """Masked-prediction cross-entropy over cluster ids (HuBERT: masked frames only, unless unmasked_weight > 0).

    With `dtype` (bf16) the forward pass runs under autocast; the weights, the optimiser and the loss stay fp32.
    """
    wavs = F.layer_norm(wavs, wavs.shape[-1:])  # do_normalize: per-utterance zero mean, unit variance
    T = targets.shape[1]
    mask = span_mask(wavs.shape[0], T, cfg.mask_prob, cfg.mask_length, gen).to(wavs.device)
    with torch.autocast(wavs.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        hidden = model(wavs, mask_time_indices=mask).last_hidden_state[:, :T]
        logits = head(hidden[mask])
    hidden, logits = hidden.float(), logits.float()
    loss = F.cross_entropy(logits, targets[mask])
    acc = (logits.argmax(-1) == targets[mask]).float().mean()
    if cfg.unmasked_weight > 0:  # HuBERT's L = a*L_masked + (1-a)*L_unmasked with a < 1 (its Table/§ on alpha)
        loss = (1 - cfg.unmasked_weight) * loss + cfg.unmasked_weight * F.cross_entropy(head(hidden[~mask]), targets[~mask])
    return loss, float(acc)


def _teacher_features(teacher, wavs: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, T, D) hidden state `layer` of the frozen first-iteration model on unmasked, normalised audio."""
    with torch.no_grad():
        out = teacher(F.layer_norm(wavs, wavs.shape[-1:]), output_hidden_states=True)
    return out.hidden_states[layer]


def _second_iteration_targets(teacher, paths, cfg, gen, device) -> tuple:
    """HuBERT iteration two: k-means on the first model's layer features; returns (centres, info)."""
    from sklearn.cluster import MiniBatchKMeans
    layer = cfg.second_iteration_layer
    picks = torch.randperm(len(paths), generator=gen)[:300].tolist()
    feats = []
    for s in range(0, len(picks), 16):
        wavs = [_as_float(_load_pcm16(paths[i])) for i in picks[s:s + 16]]
        for w in wavs:
            feats.append(_teacher_features(teacher, w[None].to(device), layer)[0].cpu())
    feats = torch.cat(feats).numpy()
    rng = np.random.default_rng(cfg.seed)
    sample = feats[rng.permutation(len(feats))[:60000]]
    km = MiniBatchKMeans(cfg.num_clusters, random_state=cfg.seed, batch_size=4096, n_init=3, max_iter=100).fit(sample)
    return torch.from_numpy(km.cluster_centers_).float().to(device), {
        "frames": int(len(sample)), "inertia_per_frame": float(km.inertia_ / len(sample)), "layer": layer}


def _lr_at(step: int, cfg, total: int | None = None) -> float:
    total = total or cfg.steps
    warmup = max(1, int(0.08 * total))  # HuBERT warms up for 8% of training, then decays linearly
    return cfg.lr * min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))


def _read_corpus(root, cfg) -> list:
    """Paths of the train wavs long enough to pretrain on (the audio itself is read when needed)."""
    rows = [r for r in read_split(root, "train") if r["wav"] is not None]
    min_len = WINDOW + FRAME * (cfg.mask_length + 1)
    paths = [r["wav"] for r in rows if sf.info(str(r["wav"])).frames >= min_len]
    if not paths:
        raise ValueError(f"{root}: no train utterances with audio long enough to pretrain on")
    return paths


def train_pocket_hubert(corpus_root, cfg, out_dir) -> Path:
    """Pretrain the pocket HuBERT on the corpus's train audio and save_pretrained it into ``out_dir``."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    paths = _read_corpus(corpus_root, cfg)
    sample = [_load_pcm16(paths[i]) for i in torch.randperm(len(paths), generator=gen)[:1000].tolist()]
    centers, km_info = _fit_kmeans(sample, cfg.num_clusters, cfg.seed)
    del sample
    labels = _labels(paths, centers)
    t_labels = time.time() - t0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # minutes on a GPU, the same recipe
    model = HubertModel(hubert_config(cfg)).train().to(device)
    head = MaskedPredictionHead(cfg.hidden_size, cfg.num_clusters).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    curve, second, second_info = [], cfg.second_iteration_steps, None
    total = cfg.steps + second
    dtype = pretraining_autocast(cfg.precision, device)
    for step in (bar := tqdm(range(total), desc="pocket HuBERT", mininterval=5)):
        reclaim_threads()  # a second thread, once the pocket CLIP training beside this one has ended (notebook 01)
        if step == cfg.steps:  # iteration two: targets from the first model's own features, a fresh head
            teacher = copy.deepcopy(model).eval()
            centres2, second_info = _second_iteration_targets(teacher, paths, cfg, gen, device)
            head = MaskedPredictionHead(cfg.hidden_size, cfg.num_clusters).to(device)
            params = list(model.parameters()) + list(head.parameters())
            opt.add_param_group({"params": list(head.parameters())})
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg, total)
        wavs, targets = (t.to(device) for t in _batch(paths, labels, cfg, gen))
        if step >= cfg.steps:
            feats = _teacher_features(teacher, wavs, cfg.second_iteration_layer)[:, :targets.shape[1]]
            targets = torch.cdist(feats, centres2[None]).argmin(-1)
        loss, acc = _step_loss(model, head, wavs, targets, cfg, gen, dtype)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        curve.append([step, round(loss.item(), 4), round(acc, 4)])
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}", refresh=False)
    _save(model.cpu(), centers, out_dir, {
        "kmeans": km_info, "second_iteration_kmeans": second_info, "loss_curve": curve, "utterances": len(paths), "label_seconds": round(t_labels, 1),
        "wall_seconds": round(time.time() - t0, 1), "head": "cosine logits vs label embeddings, tau 0.1",
        "chance_loss": math.log(cfg.num_clusters),
        "precision_used": str(dtype or torch.float32).replace("torch.", ""), "threads_at_end": torch.get_num_threads(),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}})
    return Path(out_dir)


def _save(model: HubertModel, centers: torch.Tensor, out_dir, info: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(out)
    np.save(out / "kmeans_centers.npy", centers.numpy())
    (out / "training.json").write_text(json.dumps(info, indent=1))
