"""Parallel SpeechCLIP: one CLS token summarises the utterance into CLIP's image-embedding space (§3).

    e_speech = normalize( W · LN( TransformerLayer([CLS; h_1 .. h_T]) )_0 )

No positional encoding is added: the weighted HuBERT features already carry position. Introduced in
notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def prepend_tokens(tokens: nn.Parameter, speech_feats: torch.Tensor, pad_mask: torch.Tensor):
    """[tokens; frames] with a key-padding mask in which the prepended tokens are never masked."""
    batch = speech_feats.shape[0]
    x = torch.cat([tokens.expand(batch, -1, -1).to(speech_feats.dtype), speech_feats], dim=1)  # (B, n+T, D_a)
    keep = torch.zeros(batch, tokens.shape[1], dtype=torch.bool, device=pad_mask.device)
    return x, torch.cat([keep, pad_mask], dim=1)


def encoder_layer_queries(layer: nn.TransformerEncoderLayer, x: torch.Tensor, pad_mask: torch.Tensor,
                          queries: int) -> torch.Tensor:
    """A post-LN nn.TransformerEncoderLayer's output at the first `queries` positions only: (B, queries, D).

    Every position still serves as key and value, so the result equals the full layer's output there; the frames'
    own outputs, which nothing reads after the last layer, are not computed (their queries, output projection and
    feed-forward are most of a layer's cost).
    """
    q = x[:, :queries]
    attended = layer.self_attn(q, x, x, key_padding_mask=pad_mask, need_weights=False)[0]
    y = layer.norm1(q + layer.dropout1(attended))
    return layer.norm2(y + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(y))))))


class ParallelBranch(nn.Module):
    """CLS token + post-LN transformer layer(s) + final LayerNorm + Linear(D_a -> D).

    Only the CLS output is read, so the last layer runs for the CLS query alone (`encoder_layer_queries`).
    """

    def __init__(self, d_model: int, out_dim: int, heads: int = 8, layers: int = 1, ffn_mult: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, d_model))  # N(0, 1) as in the reference
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn_mult * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=False)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, out_dim)

    def forward(self, speech_feats: torch.Tensor, pad_mask: torch.Tensor) -> dict:
        """speech_feats (B, T, D_a), pad_mask (B, T) True on padding -> parallel_embeds (B, D) L2-normalised."""
        x, mask = prepend_tokens(self.cls, speech_feats, pad_mask)
        *lower, last = self.transformer.layers
        for layer in lower:
            x = layer(x, src_key_padding_mask=mask)
        cls = self.final_norm(encoder_layer_queries(last, x, mask, 1)[:, 0])
        return {"parallel_embeds": F.normalize(self.proj(cls), dim=-1)}
