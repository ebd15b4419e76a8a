"""Continuous integrate-and-fire (CIF): a variable number of keyword vectors per utterance (§5.1, §5.2).

SpeechCLIP+ paper, method section (Cascaded+): instead of K fixed keyword slots, each frame gets a weight
alpha_t in [0, 1]; the weights are integrated along time and a keyword fires each time the running sum crosses
the threshold beta = 1. With c_t = sum_{s<=t} alpha_s, frame t gives keyword j the part of [c_{t-1}, c_t] that
lies in [j beta, (j+1) beta]:

    w_jt = max(0, min(c_t, (j+1) beta) - max(c_{t-1}, j beta)),    keyword_j = sum_t w_jt h_t

so a complete keyword is a weighted sum of its frames with weights summing to beta, and a frame that crosses the
threshold splits its weight: the part that completes keyword j goes to it and the remainder starts keyword j+1.
The quantity loss L_q = mean_i |sum_t alpha_it - L*_i| teaches how many keywords to fire (§5.2).

The weights are computed for all tokens and frames at once as a (B, N, T) tensor, so there is no loop over
frames or utterances; the running sum is kept in float64 so that floor(sum alpha) never flips on rounding.
Introduced in notebooks/20_cif.ipynb, which checks a loop-based integrate-and-fire against `fire_weights`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

MAX_TOKENS = 75  # SOT + 75 keywords + EOT fill CLIP's 77 positions (§5.1)


def scale_to_target(alpha: torch.Tensor, target: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """alpha (B, T) rescaled to sum to threshold * target + 1e-5 per utterance, in float64 (§5.1 step 3).

    The 1e-5 makes floor(sum alpha / threshold) exactly the target, so the first steps fire the target count.
    """
    alpha = alpha.double()
    total = alpha.sum(1, keepdim=True).clamp_min(1e-8)
    return alpha * (threshold * target.double()[:, None] + 1e-5) / total


def fire_weights(alpha: torch.Tensor, threshold: float = 1.0, max_tokens: int = MAX_TOKENS,
                 tail_threshold: float | None = None):
    """alpha (B, T), zero on padding -> weights (B, N, T) float64, token_lens (B,), fire_frames (B, N).

    Token count per utterance (the tail rule, §5.1 steps 4 and 6):
    - floor(sum alpha / threshold) complete tokens fire; the leftover weight r is the incomplete tail;
    - tail_threshold=None (training) drops the tail; a number (inference, 0.5 in the reference) emits it as
      one more token when r >= tail_threshold, its weights rescaled to sum to the threshold;
    - at least 1 token (an utterance whose weights sum below the threshold gives its partial token, rescaled
      the same way) and at most max_tokens (weight after the last kept token is discarded).
    fire_frames[b, j] is the last frame that gave token j weight (the crossing frame), -1 past token_lens.
    """
    a = alpha.double()
    cum = a.cumsum(1)  # (B, T)
    prev = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=1)  # exact c_{t-1}, not cum - a
    total = cum[:, -1]
    fired = torch.floor(total / threshold)
    remainder = total - fired * threshold
    lens = fired.clone()
    if tail_threshold is not None:
        lens = lens + (remainder >= tail_threshold).double()
    lens = lens.clamp(1, max_tokens).long()
    n = int(lens.max())
    lo = torch.arange(n, dtype=torch.float64, device=a.device)[None, :, None] * threshold  # (1, N, 1)
    weights = (torch.minimum(cum[:, None, :], lo + threshold) - torch.maximum(prev[:, None, :], lo)).clamp(min=0)
    j = torch.arange(n, device=a.device)[None, :]  # (1, N)
    partial = (j == fired.long()[:, None]) & (j < lens[:, None])  # the emitted tail or the lone partial token
    scale = torch.where(partial, threshold / remainder.clamp_min(1e-8)[:, None], torch.ones_like(partial, dtype=a.dtype))
    weights = weights * (scale * (j < lens[:, None]))[..., None]
    frames = torch.arange(a.shape[1], device=a.device)
    fire_frames = torch.where(weights > 0, frames, -1).amax(-1)  # (B, N)
    return weights, lens, fire_frames


def quantity_loss(quantity: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_q = mean_i |Q_i - L*_i|, with Q_i = sum_t alpha_it before any scaling (§5.2)."""
    return (quantity.float() - target.float()).abs().mean()


def frame_targets(feat_lens: torch.Tensor, frames_per_token: int = 20, frame_pool: int = 1,
                  max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """L*_i = round(T_i / frames_per_token), T_i counted at HuBERT's 50 Hz (§5.2): one keyword per 0.4 s.

    Pooled features (frame_pool > 1) are counted back at 50 Hz. Clamped to [1, max_tokens], the counts CIF can
    emit (the reference does not clamp; a target outside that range only adds an unreachable loss).
    """
    return torch.round(feat_lens.double() * frame_pool / frames_per_token).clamp(1, max_tokens).long()


def caption_targets(clip, texts, content_only: bool = False, max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """L*_i from the caption: its CLIP subword count (the reference's unused text target), or content subwords only.

    Content subwords drop the function words of `evaluation.FUNCTION_WORDS`, the words a keyword rarely names.
    """
    from speechclip.evaluation import FUNCTION_WORDS

    ids = clip.tokenize(texts)  # (B, 77)
    drop = {0, clip.sot_id, clip.eot_id}
    if content_only:
        drop |= {i for i in ids.unique().tolist()
                 if clip.tokenizer.decoder.get(i, "").replace("</w>", "") in FUNCTION_WORDS}
    keep = ~torch.isin(ids, torch.tensor(sorted(drop)))
    return keep.sum(1).clamp(1, max_tokens).long()


class CIF(nn.Module):
    """Weights from a 1-D convolution + sigmoid, then integrate-and-fire over the input frames (§5.1).

    alpha = sigmoid(Linear(Dropout(ReLU(Dropout(Conv1d(x)))))) per frame, zero on padding; only alpha comes
    from the convolution, the vectors integrated are the input frames themselves (no output projection).
    """

    def __init__(self, dim: int, conv_layers: int = 1, conv_width: int = 3, dropout: float = 0.1,
                 threshold: float = 1.0, max_tokens: int = MAX_TOKENS, tail_threshold: float = 0.5):
        super().__init__()
        if conv_width % 2 == 0:
            raise ValueError(f"cif_conv_width must be odd so the weights stay aligned with frames, got {conv_width}")
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, conv_width, padding=conv_width // 2)
                                   for _ in range(conv_layers))
        self.dropout = nn.Dropout(dropout)  # the configured rate, not the reference's accidental 0.5 (pitfall 5)
        self.out = nn.Linear(dim, 1)
        self.threshold, self.max_tokens, self.tail_threshold = threshold, max_tokens, tail_threshold

    def weights(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), pad_mask (B, T) True on padding -> alpha (B, T) float32 in [0, 1], 0 on padding."""
        keep = (~pad_mask)[..., None].to(x.dtype)
        h = x * keep  # padded frames are zero, as past the end of an utterance seen alone
        for conv in self.convs:
            h = torch.relu(self.dropout(conv(h.transpose(1, 2)).transpose(1, 2))) * keep
        alpha = torch.sigmoid(self.out(self.dropout(h)).squeeze(-1).float())
        return alpha.masked_fill(pad_mask, 0.0)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        """x (B, T, D) -> tokens (B, N, D), token_lens (B,), token_mask (B, N) True on padding, fire_frames (B, N),
        alpha (B, T) as fired, quantity (B,) = sum of alpha before scaling.

        target (B,), when given, rescales alpha to fire exactly that many tokens (the first training steps).
        Training drops the incomplete tail; evaluation emits it when it holds at least tail_threshold.
        """
        alpha = self.weights(x, pad_mask)
        quantity = alpha.sum(1)
        fired_alpha = alpha if target is None else scale_to_target(alpha, target, self.threshold)
        tail = None if self.training else self.tail_threshold
        weights, lens, fire_frames = fire_weights(fired_alpha, self.threshold, self.max_tokens, tail)
        tokens = weights.to(x.dtype) @ x  # (B, N, D)
        mask = torch.arange(tokens.shape[1], device=x.device)[None, :] >= lens[:, None]
        return {"tokens": tokens, "token_lens": lens, "token_mask": mask, "fire_frames": fire_frames,
                "alpha": fired_alpha.float(), "quantity": quantity}
