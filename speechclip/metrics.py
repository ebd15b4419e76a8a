"""Retrieval recall and keyword hit rate (§7), the numbers every notebook reports.

Speech->image: an utterance's hit@k if its image is among the k nearest images (images de-duplicated by id).
Image->speech: an image's hit@k if ANY of its utterances is among the k nearest utterances (§7.1).
Introduced in notebooks/10_parallel.ipynb (recall) and notebooks/11_cascaded.ipynb (keywords).
"""
from __future__ import annotations

import torch

KS = (1, 5, 10)


def recall_at_k(scores: torch.Tensor, query_targets: list[set] | torch.Tensor, ks=KS) -> dict[str, float]:
    """scores (Q, N); a query is a hit@k if any of its target columns ranks in the top k. Percent."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (Q, kmax)
    if isinstance(query_targets, torch.Tensor):
        hit_rank = (top == query_targets[:, None]).float()
    else:
        hit_rank = torch.tensor([[int(c) in t for c in row] for row, t in zip(top.tolist(), query_targets)]).float()
    first_hit = hit_rank.cumsum(1) > 0  # (Q, kmax): hit within the top j+1
    return {f"R@{k}": 100.0 * first_hit[:, min(k, kmax) - 1].float().mean().item() for k in ks}


def dedup_images(image_embeds: torch.Tensor, image_ids: torch.Tensor):
    """One row per image id, in first-seen order -> (unique_embeds (N, D), unique_ids (N,))."""
    seen: dict[int, int] = {}
    for row, i in enumerate(image_ids.tolist()):
        seen.setdefault(i, row)
    rows = torch.tensor(list(seen.values()))
    return image_embeds[rows], image_ids[rows]


def mutual_retrieval(speech_embeds, image_embeds, image_ids, prefix_a="speech", prefix_b="image") -> dict:
    """Recall@1/5/10 in both directions for utterances (B, D) paired with images; image rows may repeat."""
    uniq_embeds, uniq_ids = dedup_images(image_embeds, image_ids)
    column_of = {int(i): c for c, i in enumerate(uniq_ids.tolist())}
    targets = torch.tensor([column_of[int(i)] for i in image_ids.tolist()])
    scores = speech_embeds.float() @ uniq_embeds.float().t()  # (B, N)
    a2b = recall_at_k(scores, targets)
    owners = [set() for _ in range(len(uniq_ids))]
    for row, col in enumerate(targets.tolist()):
        owners[col].add(row)
    b2a = recall_at_k(scores.t(), owners)
    out = {f"{prefix_a}2{prefix_b}_{k}": v for k, v in a2b.items()}
    out.update({f"{prefix_b}2{prefix_a}_{k}": v for k, v in b2a.items()})
    for k in KS:
        out[f"mean_R@{k}"] = (a2b[f"R@{k}"] + b2a[f"R@{k}"]) / 2
    return out


def paired_retrieval(a_embeds, b_embeds, prefix_a="speech", prefix_b="text") -> dict:
    """Recall@1/5/10 both ways when row i of a is paired with row i of b only (zero-shot speech<->text)."""
    scores = a_embeds.float() @ b_embeds.float().t()
    targets = torch.arange(len(a_embeds))
    out = {f"{prefix_a}2{prefix_b}_{k}": v for k, v in recall_at_k(scores, targets).items()}
    out.update({f"{prefix_b}2{prefix_a}_{k}": v for k, v in recall_at_k(scores.t(), targets).items()})
    return out


def chance_recall(num_candidates: int, num_targets: int = 1, ks=KS) -> dict[str, float]:
    """Expected recall@k of a random ranking with num_targets relevant items among num_candidates."""
    out = {}
    for k in ks:
        miss = 1.0
        for j in range(num_targets):
            miss *= max(num_candidates - k - j, 0) / (num_candidates - j)
        out[f"R@{k}"] = 100.0 * (1 - miss)
    return out


def keyword_hits(neighbour_ids: torch.Tensor, caption_ids: list[set]) -> torch.Tensor:
    """neighbour_ids (B, K, n) original CLIP ids; caption_ids[b] the caption's subword ids -> (B, K) bool hits."""
    rows = neighbour_ids.tolist()
    hits = [[not ref.isdisjoint(slot) for slot in rows[b]] for b, ref in enumerate(caption_ids)]
    return torch.tensor(hits, dtype=torch.bool).reshape(neighbour_ids.shape[:2])


def keyword_hit_rate(neighbour_ids: torch.Tensor, caption_ids: list[set], lengths=None) -> dict[str, float]:
    """Per-slot and averaged hit rate in percent (§7.2); references exclude SOT/EOT/padding (pitfall 16).

    With lengths (B,) (CIF keywords, the first lengths[b] of row b exist) slots have no fixed meaning: only
    kw_avg is returned, the hit rate over every keyword that fired (each keyword counts once).
    """
    hits = keyword_hits(neighbour_ids, caption_ids)
    if lengths is not None:
        fired = torch.arange(hits.shape[1])[None, :] < lengths.cpu()[:, None]
        return {"kw_avg": 100.0 * hits[fired].float().mean().item()}
    rate = 100.0 * hits.float().mean(0)
    out = {f"kw_{k + 1}": v for k, v in enumerate(rate.tolist())}
    out["kw_avg"] = rate.mean().item()
    return out


def keyword_chance_rate(caption_ids: list[set], vocab_size: int, n: int = 5) -> float:
    """Expected hit rate (percent) of a slot that picks n distinct subwords uniformly from vocab_size candidates.

    P(hit) = 1 - C(V - c, n) / C(V, n) for a caption with c reference subwords: the floor a keyword must beat.
    """
    from math import comb

    rates = [1 - comb(vocab_size - min(len(ref), vocab_size), n) / comb(vocab_size, n) for ref in caption_ids]
    return 100.0 * sum(rates) / max(1, len(rates))


def keyword_prior_rate(caption_ids: list[set], n: int = 5) -> float:
    """Hit rate (percent) of a slot that ignores the speech and always names the n subwords found in most captions.

    A stricter floor than chance where a few words are everywhere: on the synthetic corpus six size words each
    occur in about a third of the captions, so a constant "big" scores about 34% top-1 against a chance of 12%.
    The counts come from the same captions, so this constant has seen the split's word frequencies.
    """
    from collections import Counter

    counts = Counter(i for ref in caption_ids for i in ref)
    constant = {i for i, _ in counts.most_common(n)}
    return 100.0 * sum(bool(ref & constant) for ref in caption_ids) / max(1, len(caption_ids))
