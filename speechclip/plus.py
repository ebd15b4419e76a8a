"""SpeechCLIP+ branches: Cascaded+ (CIF keywords), Hybrid (parallel + cascaded) and Hybrid+ (parallel + CIF).

SpeechCLIP+ paper, method section; docs/reference.md §5.3 (Cascaded+), §5.4 (Hybrid), §5.5 (Hybrid+):

    Cascaded+:  h = LN(x + MHA(x)),                 keywords = VQ(BN(W · CIF(h)))           (N_i per utterance)
    Hybrid:     h = LN(x + MHA([P; C_1..8; x])),    e_par = W_p h_0,  keywords = VQ(BN(W · h_1..8))
    Hybrid+:    h = LN(x + MHA([CLS; x])),          e_par = W_p h_0,  keywords = VQ(BN(W · CIF(h_1..T)))

Every branch returns what the model turns into losses: `parallel_embeds` (B, D) where there is a parallel side,
`keyword_embeds` (B, K, D_t) quantised onto CLIP subwords (K = N_max for CIF, with `keyword_lens` (B,)), and the
CIF diagnostics. The model runs the frozen CLIP text tower. Cascaded+ is introduced in notebooks/20_cif.ipynb,
Hybrid (and Hybrid+) in notebooks/21_hybrid.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechclip.cascaded import AttentionAndNorm, KeywordBatchNorm
from speechclip.cif import CIF
from speechclip.parallel import encoder_layer_queries, prepend_tokens
from speechclip.vq import CosineVectorQuantizer


def projection(d_in: int, d_out: int, kind: str = "linear", dropout: float = 0.1) -> nn.Module:
    """Linear(D_a -> D_t), or the Large models' MLP D_a -> D_a -> D_t with ReLU and dropout between (§5.3)."""
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_in, d_out))
    raise ValueError(f"projection must be 'linear' or 'mlp', got {kind!r}")


class SharedKeywordBatchNorm(nn.Module):
    """One BatchNorm1d(D_t) shared by every keyword position, initialised to CLIP's subword statistics (§5.3).

    Statistics come from the fired keywords only: the reference also counts the zero padding past each
    utterance's N_i (pitfall 4), which would shift them towards zero by an amount that depends on the batch.
    """

    def __init__(self, dim: int, vocab_embeds: torch.Tensor):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        with torch.no_grad():
            self.bn.weight.copy_(vocab_embeds.float().std(0))
            self.bn.bias.copy_(vocab_embeds.float().mean(0))

    def forward(self, keywords: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """(B, N, D) with pad_mask (B, N) True on padding -> (B, N, D), zero on padding."""
        normed = self.bn(keywords[~pad_mask])  # (M, D): the fired keywords of the whole batch
        out = normed.new_zeros(*keywords.shape[:2], normed.shape[-1])
        out[~pad_mask] = normed
        return out


class TransformerBlock(nn.Module):
    """A post-LN transformer layer and a final LayerNorm: Large COCO Hybrid's shared block (§5.4)."""

    def __init__(self, d_model: int, heads: int = 1, ffn_mult: int = 4, dropout: float = 0.1):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, heads, ffn_mult * d_model, dropout, activation="gelu",
                                                batch_first=True, norm_first=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, need_weights: bool = False,
                queries: int | None = None):
        """(B, n, D) -> (B, n, D), or the first `queries` positions only (B, queries, D); no attention weights."""
        if queries is not None:
            return self.norm(encoder_layer_queries(self.layer, x, pad_mask, queries)), None
        return self.norm(self.layer(x, src_key_padding_mask=pad_mask)), None


class CifKeywords(nn.Module):
    """Frames -> CIF -> keyword projection -> shared BN -> VQ: a variable number of CLIP subwords (§5.3)."""

    def __init__(self, d_model: int, token_dim: int, vocab_embeds: torch.Tensor, m):
        super().__init__()
        self.cif = CIF(d_model, m.cif_conv_layers, m.cif_conv_width, m.cif_dropout, m.cif_threshold,
                       m.cif_max_tokens, m.cif_tail_threshold)
        self.proj = projection(d_model, token_dim, m.keyword_projection, m.dropout)
        self.bn = SharedKeywordBatchNorm(token_dim, vocab_embeds)
        self.vq = CosineVectorQuantizer(m.vq_temperature)

    def forward(self, frames, pad_mask, vocab_embeds, masked_positions=(), cif_target=None) -> dict:
        cif = self.cif(frames, pad_mask, cif_target)
        mask = cif["token_mask"]  # (B, N) True past each utterance's N_i
        keywords = self.bn(self.proj(cif["tokens"]), mask)
        out = self.vq(keywords, vocab_embeds, masked_positions, pad_mask=mask)
        out["keyword_embeds"] = out["keyword_embeds"].masked_fill(mask[..., None], 0.0)
        out["keyword_ids"] = out["keyword_ids"].masked_fill(mask, -1)
        out.update(keywords_continuous=keywords, keyword_lens=cif["token_lens"], keyword_mask=mask,
                   fire_frames=cif["fire_frames"], alpha=cif["alpha"], quantity=cif["quantity"])
        return out


class CascadedPlusBranch(nn.Module):
    """Attention block over the frames only (no CLS), then CIF keywords (§5.3)."""

    def __init__(self, d_model: int, token_dim: int, vocab_embeds: torch.Tensor, m):
        super().__init__()
        self.attention = AttentionAndNorm(d_model, m.cascaded_heads, m.dropout)
        self.keywords = CifKeywords(d_model, token_dim, vocab_embeds, m)

    def forward(self, speech_feats, pad_mask, vocab_embeds, masked_positions=(), cif_target=None,
                need_weights=False) -> dict:
        frames, _ = self.attention(speech_feats, pad_mask)
        return self.keywords(frames, pad_mask, vocab_embeds, masked_positions, cif_target)


class HybridBranch(nn.Module):
    """One shared block over [P_CLS, C_CLS_1..K, frames]: a parallel embedding and K fixed keywords (§5.4)."""

    def __init__(self, d_model: int, token_dim: int, embed_dim: int, vocab_embeds: torch.Tensor, m):
        super().__init__()
        self.num_keywords = m.num_keywords
        self.cls = nn.Parameter(torch.randn(1, 1 + m.num_keywords, d_model))  # P_CLS then C_CLS_1..K, N(0, 1)
        self.block = (AttentionAndNorm(d_model, m.cascaded_heads, m.dropout) if m.shared_block == "attention"
                      else TransformerBlock(d_model, m.cascaded_heads, m.ffn_mult, m.dropout))
        self.parallel_proj = projection(d_model, embed_dim, m.parallel_projection, m.dropout)
        self.proj = projection(d_model, token_dim, m.keyword_projection, m.dropout)
        self.bn = KeywordBatchNorm(m.num_keywords, token_dim, vocab_embeds, m.bn_init)
        self.vq = CosineVectorQuantizer(m.vq_temperature)

    def forward(self, speech_feats, pad_mask, vocab_embeds, masked_positions=(), cif_target=None,
                need_weights=False) -> dict:
        x, mask = prepend_tokens(self.cls, speech_feats, pad_mask)
        n = 1 + self.num_keywords
        x, weights = self.block(x, mask, need_weights=need_weights, queries=n)  # only the n tokens are read
        keywords = self.bn(self.proj(x[:, 1:n]))  # (B, K, D_t)
        out = self.vq(keywords, vocab_embeds, masked_positions)
        out.update(parallel_embeds=F.normalize(self.parallel_proj(x[:, 0]), dim=-1), keywords_continuous=keywords)
        if weights is not None:
            out["attention"] = weights[:, 1:, n:]  # keyword -> frame
        return out


class HybridPlusBranch(nn.Module):
    """One shared block over [CLS, frames]: the CLS gives the parallel embedding, the frames feed CIF (§5.5)."""

    def __init__(self, d_model: int, token_dim: int, embed_dim: int, vocab_embeds: torch.Tensor, m):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, d_model))
        self.attention = AttentionAndNorm(d_model, m.cascaded_heads, m.dropout)
        self.parallel_proj = projection(d_model, embed_dim, m.parallel_projection, m.dropout)
        self.keywords = CifKeywords(d_model, token_dim, vocab_embeds, m)

    def forward(self, speech_feats, pad_mask, vocab_embeds, masked_positions=(), cif_target=None,
                need_weights=False) -> dict:
        x, mask = prepend_tokens(self.cls, speech_feats, pad_mask)
        x, _ = self.attention(x, mask)
        out = self.keywords(x[:, 1:], pad_mask, vocab_embeds, masked_positions, cif_target)
        out["parallel_embeds"] = F.normalize(self.parallel_proj(x[:, 0]), dim=-1)
        return out


def build_plus_branch(m, d_model: int, clip) -> nn.Module:
    """The SpeechCLIP+ branch named by m.family ("cascaded_plus", "hybrid", "hybrid_plus")."""
    if m.family == "cascaded_plus":
        return CascadedPlusBranch(d_model, clip.token_dim, clip.vocab_embeds, m)
    if m.family == "hybrid":
        return HybridBranch(d_model, clip.token_dim, clip.embed_dim, clip.vocab_embeds, m)
    if m.family == "hybrid_plus":
        return HybridPlusBranch(d_model, clip.token_dim, clip.embed_dim, clip.vocab_embeds, m)
    raise ValueError(f"not a SpeechCLIP+ family: {m.family!r}")
