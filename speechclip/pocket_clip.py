"""A pocket-size CLIP built from open_clip's own classes and trained here contrastively on the corpus.

Radford et al. 2021 (CLIP) §2.3, the offline stand-in for §1.3; introduced in notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm.auto import tqdm

from speechclip.data import read_split

__all__ = ["model_config", "build_pocket_clip", "save_pocket_clip", "train_pocket_clip", "clip_loss"]

MEAN, STD = open_clip.constants.OPENAI_DATASET_MEAN, open_clip.constants.OPENAI_DATASET_STD


def model_config(cfg) -> dict:
    """open_clip model_cfg for the pocket sizes, with the real 49,408-token CLIP BPE vocabulary."""
    return {"embed_dim": cfg.embed_dim,
            "vision_cfg": {"image_size": cfg.image_size, "patch_size": cfg.patch_size, "width": cfg.vision_width,
                           "layers": cfg.vision_layers, "head_width": cfg.vision_width // cfg.heads},
            "text_cfg": {"context_length": cfg.context_length, "vocab_size": 49408, "width": cfg.text_width,
                         "heads": cfg.heads, "layers": cfg.text_layers}}


def _preprocess_cfg(cfg) -> dict:
    return {"size": cfg.image_size, "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic",
            "resize_mode": "shortest"}


def build_pocket_clip(cfg) -> tuple:
    """Randomly initialised open_clip CLIP of the pocket sizes and its eval preprocess."""
    model = open_clip.model.CLIP(**model_config(cfg))
    pp = open_clip.transform.PreprocessCfg(**_preprocess_cfg(cfg))
    return model, open_clip.transform.image_transform_v2(pp, is_train=False)


def save_pocket_clip(model, cfg, out_dir) -> Path:
    """Write an open_clip ``local-dir:`` folder: open_clip_config.json + open_clip_model.safetensors."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_config(cfg), "preprocess_cfg": _preprocess_cfg(cfg)}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: (CE(s * I T^T, diag) + CE(s * T I^T, diag)) / 2 on L2-normalised (B, D) embeddings."""
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _text_embeds(model, ids: torch.Tensor) -> torch.Tensor:
    """CLIP text tower on ids cut after the longest caption (causal mask: identical EOT features, less work)."""
    eot = ids.argmax(-1)  # EOT has the largest id in the full CLIP vocabulary
    n = int(eot.max()) + 1
    x = model.token_embedding(ids[:, :n]) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    return F.normalize(x[torch.arange(len(x)), eot] @ model.text_projection, dim=-1)


def _load_pairs(root, split: str, preprocess, keyword_captions: bool = False) -> tuple:
    """Preprocessed images (N, 3, H, W), CLIP ids of every caption (M, 77), caption->image index (M,), image ids.

    keyword_captions adds each caption's content words alone ("big red circle left square") as one more caption
    of its image: the real CLIP read terse web alt-text as well as sentences, and a cascaded model's keywords
    reach the text tower as such a bag of words (notebook 11 measures the topline with and without).
    """
    from speechclip.probes import keyword_captions as bags

    rows = read_split(root, split)
    image_ids = sorted({r["image_id"] for r in rows})
    where = {k: i for i, k in enumerate(image_ids)}
    paths = {r["image_id"]: r["image"] for r in rows}
    images = torch.stack([preprocess(Image.open(paths[k]).convert("RGB")) for k in image_ids])
    texts, owner = [r["caption"] for r in rows], [where[r["image_id"]] for r in rows]
    if keyword_captions:
        texts, owner = texts + bags(texts), owner + owner
    ids = open_clip.get_tokenizer("ViT-B-32")(texts)
    return images, ids, torch.tensor(owner), image_ids


def _batches(caption_image: torch.Tensor, batch_size: int, gen: torch.Generator):
    """One epoch = every image once, with one random caption each, so no batch holds an image twice.

    (Putting whole synthetic scene families into one batch as hard negatives was tried: test R@1 fell 50 -> 41.)
    """
    by_image = [torch.nonzero(caption_image == i).flatten() for i in range(int(caption_image.max()) + 1)]
    order = torch.randperm(len(by_image), generator=gen)
    for s in range(0, len(order) - batch_size // 2, batch_size):  # drop a tiny last batch: too few negatives
        imgs = order[s:s + batch_size]
        caps = torch.stack([by_image[i][torch.randint(len(by_image[i]), (1,), generator=gen)][0] for i in imgs])
        yield imgs, caps


def train_pocket_clip(corpus_root, cfg, out_dir) -> Path:
    """Train the pocket CLIP on the train split's image-caption pairs and save it as an open_clip folder."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, preprocess = build_pocket_clip(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # minutes on a GPU, the same recipe
    model = model.to(device)
    images, ids, caption_image, _ = _load_pairs(corpus_root, "train", preprocess, cfg.keyword_captions)
    n_images = len(images)
    steps = cfg.epochs * max(1, math.ceil((n_images - cfg.batch_size // 2) / cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))))  # warmup then cosine
    model.train()
    curve, step = [], 0
    bar = tqdm(total=steps, desc="pocket CLIP", mininterval=5)
    for epoch in range(cfg.epochs):
        for imgs, caps in _batches(caption_image, cfg.batch_size, gen):
            loss = clip_loss(F.normalize(model.encode_image(images[imgs].to(device)), dim=-1),
                             _text_embeds(model, ids[caps].to(device)), model.logit_scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's clamp keeps the temperature >= 0.01
            curve.append([step, epoch, round(loss.item(), 4)])
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    save_pocket_clip(model.eval().cpu(), cfg, out_dir)
    info = {"loss_curve": curve, "steps": step, "train_images": n_images, "train_captions": len(ids),
            "logit_scale": model.logit_scale.exp().item(), "wall_seconds": round(time.time() - t0, 1),
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    (Path(out_dir) / "training.json").write_text(json.dumps(info, indent=1))
    return Path(out_dir)
