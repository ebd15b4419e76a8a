"""SpeechCLIP: frozen speech encoder -> weighted layer sum -> branch(es) -> CLIP space, one class for every family.

A branch returns any of `parallel_embeds` (B, D) and `keyword_embeds` (B, K, D_t) (+ `keyword_lens` for CIF).
The model turns keywords into a cascaded embedding with the frozen CLIP text encoder and adds one contrastive
term per objective (§2.1): L = w_c L_cascaded + w_p L_parallel (+ w_q L_quantity with CIF, §5.2).
Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechclip.cascaded import CascadedBranch
from speechclip.cif import caption_targets, frame_targets, quantity_loss
from speechclip.config import HAS_CIF, HAS_PARALLEL, Config, config_from_dict
from speechclip.losses import ContrastiveLoss
from speechclip.parallel import ParallelBranch
from speechclip.plus import build_plus_branch
from speechclip.speech_encoder import pool_frames

FROZEN_PREFIXES = ("speech_encoder.", "clip.")
# Scalars besides the losses that fit logs in its train rows (CIF: fired keywords against the quantity target).
TRAIN_DIAGNOSTICS = ("code_perplexity", "cif_tokens", "cif_target", "cif_count_error")


def pad_mask_from_lens(feat_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) True on padding."""
    return torch.arange(max_len, device=feat_lens.device)[None, :] >= feat_lens[:, None]


def utterance_norm(speech_feats: torch.Tensor, pad_mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean and variance normalisation over real frames, per dimension (CMVN); padding stays 0.

    Not in the paper: the pocket preset uses it because the pocket HuBERT's frames share a large common
    component that a one-layer branch learns to look past only slowly (benchmarks/README.md, learning controls).
    """
    keep = (~pad_mask).to(speech_feats.dtype)[..., None]  # (B, T, 1)
    count = keep.sum(1, keepdim=True).clamp(min=1)
    mean = (speech_feats * keep).sum(1, keepdim=True) / count
    var = ((speech_feats - mean) ** 2 * keep).sum(1, keepdim=True) / count
    return (speech_feats - mean) / (var + eps).sqrt() * keep


def span_mask_1d(batch: int, length: int, prob: float, span: int, device) -> torch.Tensor:
    """(batch, length) bool: every position starts a span of `span` masked positions with probability `prob`."""
    starts = (torch.rand(batch, 1, length, device=device) < prob).float()
    return F.max_pool1d(F.pad(starts, (span - 1, 0)), span, stride=1)[:, 0].bool()


def mask_features(speech_feats: torch.Tensor, m) -> torch.Tensor:
    """SpecAugment on the layer sum (B, T, D): time spans and channel spans set to 0 (model.feature_mask_*)."""
    b, t, d = speech_feats.shape
    keep = torch.ones(b, t, d, dtype=torch.bool, device=speech_feats.device)
    if m.feature_mask_time_prob > 0:
        keep &= ~span_mask_1d(b, t, m.feature_mask_time_prob, m.feature_mask_time_span, speech_feats.device)[..., None]
    if m.feature_mask_channel_prob > 0:
        keep &= ~span_mask_1d(b, d, m.feature_mask_channel_prob, m.feature_mask_channel_span,
                              speech_feats.device)[:, None, :]
    return speech_feats * keep


class SpeechCLIP(nn.Module):
    """CLIP-style public surface: encode_speech, encode_image, encode_text, keywords, logit_scale."""

    def __init__(self, cfg: Config, speech_encoder: nn.Module, clip: nn.Module):
        super().__init__()
        from speechclip.speech_encoder import WeightedLayerSum

        self.cfg, m = cfg, cfg.model
        self.speech_encoder, self.clip = speech_encoder, clip
        d_model = speech_encoder.hidden_size
        self.layer_weights = WeightedLayerSum(speech_encoder.num_hidden_states, cfg.speech.normalize_hiddenstates)
        self.parallel = self.cascaded = self.plus = None
        if m.family in ("parallel",):
            self.parallel = ParallelBranch(d_model, clip.embed_dim, m.parallel_heads, m.parallel_layers,
                                           m.ffn_mult, m.dropout)
        if m.family in ("cascaded",):
            self.cascaded = CascadedBranch(d_model, clip.token_dim, clip.vocab_embeds, m.num_keywords,
                                           m.cascaded_heads, m.dropout, m.vq_temperature, m.bn_init)
        if m.family in ("cascaded_plus", "hybrid", "hybrid_plus"):
            if m.family in HAS_CIF and m.cif_max_tokens > clip.context_length - 2:
                raise ValueError(f"model.cif_max_tokens={m.cif_max_tokens}: CLIP reads at most "
                                 f"{clip.context_length - 2} keywords between SOT and EOT")
            self.plus = build_plus_branch(m, d_model, clip)
        self.loss_fn = ContrastiveLoss(m.temperature_init, m.temperature_trainable)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.loss_fn.logit_scale

    @property
    def retrieval_source(self) -> str:
        """The embedding retrieval reads: the family's only one, or the configured one for the hybrids."""
        if self.cfg.model.retrieval_branch != "auto":
            return self.cfg.model.retrieval_branch
        return "parallel" if self.cfg.model.family in HAS_PARALLEL else "cascaded"

    @property
    def keyword_masked_positions(self) -> torch.Tensor:
        """Reduced-vocabulary positions no keyword may pick: the special tokens, and with model.keyword_vocab
        "content" also the function words (evaluation.FUNCTION_WORDS) and subwords without a letter."""
        special = self.clip.special_vocab_positions
        if self.cfg.model.keyword_vocab == "all":
            return special
        from speechclip.evaluation import FUNCTION_WORDS
        words = self.clip.decode_vocab(torch.arange(len(self.clip.vocab_ids)))
        extra = [i for i, w in enumerate(words) if w in FUNCTION_WORDS or not any(c.isalpha() for c in w)]
        return torch.unique(torch.cat([special, torch.tensor(extra, dtype=torch.long, device=special.device)]))

    @property
    def has_cif(self) -> bool:
        return self.cfg.model.family in HAS_CIF

    def train(self, mode: bool = True):
        super().train(mode)
        self.speech_encoder.eval()  # frozen encoders stay in eval mode: dropout off (pitfall 12)
        self.clip.eval()
        return self

    def encode_features(self, hidden_states, feat_lens, need_weights: bool = False, cif_target=None) -> dict:
        """hidden_states (L+1, B, T, D_a), feat_lens (B,) -> dict with speech_embeds (B, D) and branch outputs.

        cif_target (B,), given only in the first training steps, rescales the CIF weights to fire that many.
        """
        speech_feats = self.layer_weights(hidden_states)  # (B, T, D_a)
        if self.cfg.model.branch_pool > 1:  # parallel only (validate_config): a coarser frame rate, a CPU lever
            pooled, feat_lens = pool_frames(speech_feats[None], feat_lens, self.cfg.model.branch_pool)
            speech_feats = pooled[0]
        pad_mask = pad_mask_from_lens(feat_lens, speech_feats.shape[1])
        if self.cfg.model.feature_norm == "utterance":
            speech_feats = utterance_norm(speech_feats, pad_mask)
        if self.training and (self.cfg.model.feature_mask_time_prob > 0 or self.cfg.model.feature_mask_channel_prob > 0):
            speech_feats = mask_features(speech_feats, self.cfg.model)
        out: dict = {}
        if self.parallel is not None:
            out.update(self.parallel(speech_feats, pad_mask))
        if self.cascaded is not None:
            out.update(self.cascaded(speech_feats, pad_mask, self.clip.vocab_embeds,
                                     self.keyword_masked_positions, need_weights))
        if self.plus is not None:
            out.update(self.plus(speech_feats, pad_mask, self.clip.vocab_embeds, self.keyword_masked_positions,
                                 cif_target, need_weights))
        if "keyword_embeds" in out:
            out["cascaded_embeds"] = self.clip.encode_keywords(out["keyword_embeds"], out.get("keyword_lens"))
        out["speech_embeds"] = out[f"{self.retrieval_source}_embeds"]
        return out

    def encode_speech(self, wavs: torch.Tensor, wav_lens: torch.Tensor, need_weights: bool = False) -> dict:
        """wavs (B, S) at 16 kHz, wav_lens (B,) -> dict with speech_embeds (B, D), L2-normalised."""
        hidden_states, feat_lens = self.speech_encoder(wavs, wav_lens)
        return self.encode_features(hidden_states, feat_lens, need_weights)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)

    def encode_text(self, texts) -> torch.Tensor:
        return self.clip.encode_text(texts)

    @torch.no_grad()
    def keywords(self, wavs: torch.Tensor, wav_lens: torch.Tensor, top_n: int = 1) -> list[list[list[str]]]:
        """The subwords each keyword slot selects (top_n nearest by cosine) for every utterance."""
        if self.cfg.model.family == "parallel":
            raise ValueError("keywords() needs a model with keywords (any family but 'parallel')")
        out = self.encode_speech(wavs, wav_lens)
        top = out["scores"].topk(top_n, dim=-1).indices  # (B, K, n) reduced-vocabulary positions
        lens = out.get("keyword_lens", torch.full((len(top),), top.shape[1])).tolist()  # CIF: N_i per utterance
        return [[self.clip.decode_vocab(slot) for slot in utt[:n]] for utt, n in zip(top.tolist(), lens)]

    def quantity_targets(self, feat_lens: torch.Tensor, texts=None) -> torch.Tensor:
        """L*_i (B,): keywords CIF should fire, from the frame count (the reference) or the caption (§5.2)."""
        m = self.cfg.model
        if m.quantity_target == "frames":
            return frame_targets(feat_lens, m.cif_frames_per_token, self.cfg.speech.frame_pool, m.cif_max_tokens)
        if texts is None:
            raise ValueError(f"model.quantity_target={m.quantity_target!r} needs the batch's captions ('texts')")
        return caption_targets(self.clip, texts, m.quantity_target == "content_words", m.cif_max_tokens).to(
            feat_lens.device)

    def forward(self, batch: dict, step: int | None = None) -> dict:
        """One training/validation step's losses from a batch of features or waveforms and images.

        step: the optimiser step fit is at; CIF weights are rescaled to the target count while the model trains
        and step < model.cif_scaling_steps (§5.1). Without a step nothing is rescaled.
        """
        if "hidden_states" in batch:
            hidden_states, feat_lens = batch["hidden_states"], batch["feat_lens"]
        else:
            hidden_states, feat_lens = self.speech_encoder(batch["wavs"], batch["wav_lens"])
        m, target = self.cfg.model, None
        if self.has_cif:
            target = self.quantity_targets(feat_lens, batch.get("texts"))
        scaling = target is not None and self.training and step is not None and step < m.cif_scaling_steps
        out = self.encode_features(hidden_states, feat_lens, cif_target=target if scaling else None)
        if target is not None:
            out.update(quantity_target=target, **cif_diagnostics(out, target))
        image_embeds = batch.get("image_embeds")
        if image_embeds is None:
            image_embeds = self.encode_image(batch["images"])
        ids, losses = batch["image_ids"], {}
        if "parallel_embeds" in out:
            losses["parallel_loss"] = self.loss_fn(out["parallel_embeds"], image_embeds, ids)
        if "cascaded_embeds" in out:
            losses["cascaded_loss"] = self.loss_fn(out["cascaded_embeds"], image_embeds, ids)
        if target is not None:
            losses["quantity_loss"] = quantity_loss(out["quantity"], target)
        weights = {"parallel_loss": m.parallel_weight, "cascaded_loss": m.cascaded_weight,
                   "quantity_loss": m.quantity_weight}
        losses["loss"] = sum(weights[k] * v for k, v in losses.items())
        return {**out, **losses}

    def trainable_state_dict(self) -> dict:
        """Only what trains (and BN statistics): no frozen backbone weights, no duplicate CLIP (pitfall 18)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(FROZEN_PREFIXES)}

    def save(self, path: str | Path, **extra) -> None:
        payload = {"config": self.cfg.to_dict(), "state": self.trainable_state_dict(),
                   "vocab_ids": self.clip.vocab_ids.cpu(), **extra}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.partial")
        torch.save(payload, tmp)
        tmp.replace(path)  # a crash mid-save never leaves a cut-short best.pt


def cif_diagnostics(out: dict, target: torch.Tensor) -> dict:
    """Mean fired keywords, mean target and mean |N_i - L*_i| (the reference's dsample_len_diff, §5.2)."""
    lens = out["keyword_lens"].float()
    return {"cif_tokens": lens.mean(), "cif_target": target.float().mean(),
            "cif_count_error": (lens - target.float()).abs().mean()}


def load_backbones(cfg: Config, random_init: bool = False, artifacts_dir=None):
    """The frozen speech encoder and CLIP named by the config, real or pocket-size, through one loader each.

    Pocket backbones are trained on first use and cached under artifacts_dir/pocket (default: <repo>/artifacts).
    """
    from speechclip.clip_encoder import load_clip
    from speechclip.speech_encoder import load_speech_encoder

    # artifacts_dir is where pocket backbones are cached; the hub and open_clip keep their own download caches
    speech = load_speech_encoder(cfg.speech, random_init, pocket_cfg=cfg.pocket_hubert, corpus_root=cfg.data.root,
                                 artifacts_dir=artifacts_dir)
    clip = load_clip(cfg.clip, random_init, pocket_cfg=cfg.pocket_clip, corpus_root=cfg.data.root,
                     artifacts_dir=artifacts_dir)
    return speech, clip


def build_model(cfg: Config, speech_encoder=None, clip=None, vocab_captions=None,
                random_init: bool = False) -> SpeechCLIP:
    """Build a SpeechCLIP for cfg.model.family; backbones are loaded unless given (random_init: no weights)."""
    if speech_encoder is None or clip is None:
        speech_encoder, clip = load_backbones(cfg, random_init)
    if vocab_captions is not None:
        clip.set_vocab(vocab_captions)
    return SpeechCLIP(cfg, speech_encoder, clip)


def read_checkpoint(path: str | Path, map_location="cpu", keys=("config",)) -> dict:
    """torch.load of a file fit or SpeechCLIP.save wrote; a missing, cut-short or foreign file names itself."""
    from speechclip.corpora import WeightsError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here; train one with speechclip.train.fit first.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise WeightsError(f"{path} ({path.stat().st_size} bytes) is not a readable checkpoint "
                           f"({str(err).split('. ')[0]}): it was probably cut short by an interrupted copy or save. "
                           "Copy it again, or delete it to train that run from scratch.") from None
    missing = [k for k in keys if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise WeightsError(f"{path}: not a SpeechCLIP checkpoint (no {missing}); pass a file written by fit.")
    return payload


def load_model(path: str | Path, speech_encoder=None, clip=None, map_location="cpu") -> SpeechCLIP:
    """Rebuild a saved model: its config, its reduced vocabulary, then its trained weights."""
    payload = read_checkpoint(path, map_location, keys=("config", "state", "vocab_ids"))
    cfg = config_from_dict(payload["config"])
    if speech_encoder is None or clip is None:
        speech_encoder, clip = load_backbones(cfg)
    clip.set_vocab_ids(payload["vocab_ids"])
    model = SpeechCLIP(cfg, speech_encoder, clip)
    missing, unexpected = model.load_state_dict(payload["state"], strict=False)
    missing = [k for k in missing if not k.startswith(FROZEN_PREFIXES)]
    if missing or unexpected:
        raise RuntimeError(f"{path}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    return model.to(next(clip.parameters()).device)  # new branch weights join the (maybe GPU) backbones
