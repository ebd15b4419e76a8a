"""Cosine vector quantization of keywords onto CLIP subword embeddings, with a straight-through gradient (§4.3).

    p = softmax(cos(k, E) / tau),  h = onehot(argmax cos(k, E)),  q = h + p - stopgrad(p),  keyword = q E

Forward passes the exact embedding of the nearest subword; backward uses the softmax's gradient.
Special tokens are masked by their positions in the reduced vocabulary, computed from the vocabulary itself
(pitfall 1: never the hard-coded 0, 2, 3). Introduced in notebooks/11_cascaded.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cosine_scores(keywords: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(B, K, D) keywords against (V, D) codebook -> (B, K, V) cosine similarities."""
    return F.normalize(keywords, dim=-1) @ F.normalize(codebook, dim=-1).t()


def straight_through(scores: torch.Tensor, temperature: float, hard_only: bool) -> torch.Tensor:
    """One-hot of the argmax in the forward pass; softmax(scores / tau) gradient in the backward pass."""
    hard = F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)
    if hard_only:
        return hard
    soft = torch.softmax(scores / temperature, dim=-1)
    return hard + soft - soft.detach()


class CosineVectorQuantizer(nn.Module):
    """Replace each keyword by its nearest CLIP subword embedding (cosine), straight-through in training."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature  # fixed, not learned (§4.3: "fixed=0.1", no Gumbel noise)

    def forward(self, keywords: torch.Tensor, codebook: torch.Tensor, masked_positions=(), pad_mask=None) -> dict:
        """keywords (B, K, D), codebook (V, D) -> keyword_embeds (B, K, D), keyword_ids (B, K) and diagnostics.

        pad_mask (B, K), True on keywords that do not exist (CIF padding), keeps them out of the perplexity.
        """
        scores = cosine_scores(keywords.float(), codebook.float())  # (B, K, V)
        if len(masked_positions):
            scores = scores.clone()
            scores[..., torch.as_tensor(masked_positions, device=scores.device)] = float("-inf")
        onehot = straight_through(scores, self.temperature, hard_only=not self.training)
        keyword_embeds = onehot @ codebook.float()  # (B, K, D)
        return {
            "keyword_embeds": keyword_embeds,
            "keyword_ids": scores.argmax(-1),
            "scores": scores,
            "code_perplexity": code_perplexity(onehot.detach() if pad_mask is None else onehot.detach()[~pad_mask]),
        }


def code_perplexity(onehot: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the batch-averaged code usage: how many subwords the keywords actually use."""
    usage = onehot.reshape(-1, onehot.shape[-1]).mean(0)
    return torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
