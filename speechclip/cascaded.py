"""Cascaded SpeechCLIP: K keyword tokens -> BatchNorm -> VQ onto CLIP subwords -> frozen CLIP text encoder (§4).

    kw = BN( W · LN(x + MHA(x))_{0..K-1} ),  x = [CLS_1 .. CLS_K; h_1 .. h_T]
    e_speech = normalize( CLIPText([SOT, VQ(kw_1) .. VQ(kw_K), EOT])_EOT )

Introduced in notebooks/11_cascaded.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from speechclip.parallel import prepend_tokens
from speechclip.vq import CosineVectorQuantizer


class AttentionAndNorm(nn.Module):
    """y = LN(x + MHA(x, x, x)): one attention block, no feed-forward, no positional encoding (§4.1)."""

    def __init__(self, d_model: int, heads: int = 1, dropout: float = 0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, need_weights: bool = False,
                queries: int | None = None):
        """(B, n, D) -> (B, n, D), or with `queries` the first positions only (B, queries, D): every position
        is still a key and a value, so those outputs are the same; the others are not computed."""
        q = x if queries is None else x[:, :queries]
        out, weights = self.attn(q, x, x, key_padding_mask=pad_mask, need_weights=need_weights)
        return self.norm(q + out), weights  # weights (B, queries or n, n) averaged over heads, or None


class KeywordBatchNorm(nn.Module):
    """BatchNorm over every (keyword slot, dimension), initialised to the CLIP token-embedding statistics (§4.2).

    BN before VQ puts the keywords where the CLIP subword embeddings live, so cosine VQ has real neighbours.
    bn_init="intended" gives feature (k, d) the mean/std of dimension d; "reference" reproduces the official
    code's permuted init, where feature (k, d) gets the statistics of dimension (d*K + k) mod D (pitfall 3).
    """

    def __init__(self, num_keywords: int, dim: int, vocab_embeds: torch.Tensor, bn_init: str = "intended"):
        super().__init__()
        self.num_keywords, self.dim = num_keywords, dim
        self.bn = nn.BatchNorm1d(num_keywords * dim)
        mean, std = vocab_embeds.float().mean(0), vocab_embeds.float().std(0)  # (D,), torch.std is unbiased
        index = torch.arange(num_keywords * dim) % dim  # keyword-major flattening: feature k*D + d -> d
        if bn_init == "reference":
            flat = torch.arange(num_keywords * dim)
            k, d = flat.div(dim, rounding_mode="floor"), flat % dim
            index = (d * num_keywords + k) % dim
        elif bn_init != "intended":
            raise ValueError(f"bn_init must be 'intended' or 'reference', got {bn_init!r}")
        with torch.no_grad():
            self.bn.weight.copy_(std[index])
            self.bn.bias.copy_(mean[index])

    def forward(self, keywords: torch.Tensor) -> torch.Tensor:
        """(B, K, D) -> (B, K, D)."""
        batch = keywords.shape[0]
        return self.bn(keywords.reshape(batch, -1)).reshape(batch, self.num_keywords, self.dim)


class CascadedBranch(nn.Module):
    """K CLS tokens + attention block + Linear(D_a -> D_t) + keyword BN + VQ; the CLIP text pass is the model's."""

    def __init__(self, d_model: int, token_dim: int, vocab_embeds: torch.Tensor, num_keywords: int = 8,
                 heads: int = 1, dropout: float = 0.1, vq_temperature: float = 0.1, bn_init: str = "intended"):
        super().__init__()
        self.num_keywords = num_keywords
        self.cls = nn.Parameter(torch.randn(1, num_keywords, d_model))
        self.attention = AttentionAndNorm(d_model, heads, dropout)
        self.proj = nn.Linear(d_model, token_dim)
        self.bn = KeywordBatchNorm(num_keywords, token_dim, vocab_embeds, bn_init)
        self.vq = CosineVectorQuantizer(vq_temperature)

    def forward(self, speech_feats, pad_mask, vocab_embeds, masked_positions=(), need_weights=False) -> dict:
        """speech_feats (B, T, D_a) -> keyword_embeds (B, K, D_t), keyword_ids (B, K), attention (B, K, T)."""
        x, mask = prepend_tokens(self.cls, speech_feats, pad_mask)
        x, weights = self.attention(x, mask, need_weights=need_weights, queries=self.num_keywords)  # (B, K, D_a)
        keywords = self.bn(self.proj(x))  # (B, K, D_t)
        out = self.vq(keywords, vocab_embeds, masked_positions)
        out["keywords_continuous"] = keywords
        if weights is not None:
            out["attention"] = weights[:, :, self.num_keywords:]  # keyword -> frame
        return out
