"""Masked symmetric InfoNCE between speech and image embeddings (§2.1), used by every model family.

    L = 1/2 [ mean_i ( -z_ii + log sum_j N_ij e^{z_ij} ) + mean_j ( -z_jj + log sum_i N_ij e^{z_ij} ) ]

with z_ij = s * a_i . v_j and N_ij = [y_i != y_j] or [i == j]: other captions of the same image are removed from
the negatives. Introduced in notebooks/10_parallel.ipynb.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn


def same_image_mask(image_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) True where j is a valid denominator term for i: a different image, or i itself."""
    keep = image_ids[:, None] != image_ids[None, :]
    return keep | torch.eye(len(image_ids), dtype=torch.bool, device=image_ids.device)


def masked_contrastive_loss(
    speech_embeds: torch.Tensor, image_embeds: torch.Tensor, image_ids: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (utterance, image) pairs; embeddings must be L2-normalised (B, D)."""
    logits = logit_scale * speech_embeds @ image_embeds.t()  # (B, B): rows speech, columns images
    # Built per call from the batch's ids, so no batch-size-dependent buffer ends up in a checkpoint (pitfall 7).
    logits = logits.float().masked_fill(~same_image_mask(image_ids), float("-inf"))
    positives = logits.diagonal()
    loss_s2i = (torch.logsumexp(logits, dim=1) - positives).mean()
    loss_i2s = (torch.logsumexp(logits, dim=0) - positives).mean()
    return (loss_s2i + loss_i2s) / 2


class ContrastiveLoss(nn.Module):
    """InfoNCE with a temperature stored as a log logit scale, p = ln(1/tau), s = exp(p) (pitfall 8: unclamped)."""

    def __init__(self, temperature_init: float = 0.07, trainable: bool = False):
        super().__init__()
        value = torch.tensor(math.log(1.0 / temperature_init))
        if trainable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, speech_embeds, image_embeds, image_ids) -> torch.Tensor:
        if self.training:  # validation runs on one process only, so it must not wait for the others
            speech_embeds, image_embeds, image_ids = gather_batch(speech_embeds, image_embeds, image_ids)
        return masked_contrastive_loss(speech_embeds, image_embeds, image_ids, self.logit_scale)


def gather_batch(*tensors: torch.Tensor) -> tuple:
    """Under DDP, concatenate every process's shard so negatives span the global batch (the reference's dp).

    The autograd-aware all_gather sums gradients back onto each shard; DDP then averages across processes,
    which gives exactly the gradient of the global-batch loss.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return tensors
    from torch.distributed.nn.functional import all_gather

    return tuple(torch.cat(all_gather(t.contiguous()) if t.is_floating_point() else _gather_plain(t)) for t in tensors)


def _gather_plain(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out
