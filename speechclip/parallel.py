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


class ParallelBranch(nn.Module):
    """CLS token + post-LN transformer layer(s) + final LayerNorm + Linear(D_a -> D)."""

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
        x = self.final_norm(self.transformer(x, src_key_padding_mask=mask))
        return {"parallel_embeds": F.normalize(self.proj(x[:, 0]), dim=-1), "frame_states": x[:, 1:]}
