"""Evaluate a model on a split: speech<->image recall, zero-shot speech<->text recall, keyword hit rate (§7).

A hybrid model is scored on both embeddings (`parallel_*`, `cascaded_*` beside the unprefixed retrieval one);
a CIF model's keywords vary in number, so their hit rates average over the keywords that fired.
Introduced in notebooks/10_parallel.ipynb and notebooks/11_cascaded.ipynb.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from speechclip.metrics import (keyword_chance_rate, keyword_hit_rate, keyword_prior_rate, mutual_retrieval,
                                paired_retrieval)

NEIGHBOURS = 5  # keyword hit: top-5 nearest subwords (§7.2, detokenized_K_neighbors)
# Function words occur in nearly every caption, so a hit on them says little; the content variant drops them.
FUNCTION_WORDS = frozenset("a an the is are of on in to and there with at it its this that be by for from as".split())


@torch.no_grad()
def embed_split(model, dataset, collate, batch_size: int = 64) -> dict:
    """Every utterance's model outputs, stacked: speech_embeds (N, D), image_embeds, image_ids, texts, keywords."""
    model.eval()
    device = next(p for p in model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    keep = ("speech_embeds", "parallel_embeds", "cascaded_embeds", "keyword_embeds", "keyword_ids", "keyword_lens",
            "quantity_target", "quantity")
    rows: dict[str, list] = {k: [] for k in (*keep, "image_embeds", "image_ids", "loss")}
    texts, uids = [], []
    for batch in tqdm(loader, desc="embedding", leave=False):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        out = model(batch)
        for k in keep:
            if k in out:
                rows[k].append(out[k].float().cpu())
        image_embeds = batch.get("image_embeds")
        rows["image_embeds"].append((image_embeds if image_embeds is not None else
                                     model.encode_image(batch["images"])).float().cpu())
        rows["image_ids"].append(batch["image_ids"].cpu())
        rows["loss"].append(out["loss"].float().cpu()[None])
        texts += batch["texts"]
        uids += batch["uids"]
    out = {k: _cat_padded(v, -1 if k == "keyword_ids" else 0) for k, v in rows.items() if v}
    out.update(texts=texts, uids=uids)
    return out


def _cat_padded(chunks: list[torch.Tensor], value=0) -> torch.Tensor:
    """Concatenate batches along dim 0, padding dim 1 to the longest (CIF: a different N_max per batch)."""
    if chunks[0].dim() < 2 or len({c.shape[1] for c in chunks}) == 1:
        return torch.cat(chunks)
    n = max(c.shape[1] for c in chunks)
    return torch.cat([torch.nn.functional.pad(c, (0, 0) * (c.dim() - 2) + (0, n - c.shape[1]), value=value)
                      for c in chunks])


def keyword_neighbours(model, keyword_embeds: torch.Tensor, n: int = NEIGHBOURS) -> torch.Tensor:
    """(N, K, D_t) keywords -> (N, K, n) original CLIP ids of the n nearest non-special subwords by cosine."""
    vocab = torch.nn.functional.normalize(model.clip.vocab_embeds.float().cpu(), dim=-1)
    scores = torch.nn.functional.normalize(keyword_embeds, dim=-1) @ vocab.t()  # (N, K, V)
    scores[..., model.keyword_masked_positions.cpu()] = float("-inf")
    positions = scores.topk(n, dim=-1).indices
    return model.clip.vocab_ids.cpu()[positions]


def caption_subwords(model, texts: list[str], content_only: bool = False) -> list[set]:
    """Each caption's CLIP subword ids without padding, SOT and EOT (the fixed reference set, pitfall 16).

    content_only also drops FUNCTION_WORDS, a stricter variant reported beside the reference definition.
    """
    ids = model.clip.tokenize(texts)
    special = {0, *model.clip.vocab_ids.cpu()[model.clip.special_vocab_positions.cpu()].tolist()}
    if content_only:
        decoder = model.clip.tokenizer.decoder
        special |= {i for i in ids.unique().tolist() if decoder.get(i, "").replace("</w>", "") in FUNCTION_WORDS}
    return [set(row.tolist()) - special for row in ids]


@torch.no_grad()
def evaluate(model, dataset, collate, batch_size: int = 64, text_retrieval: bool = True) -> dict:
    """All metrics of one split in one dict (recall in percent; 'loss' is the mean batch loss)."""
    emb = embed_split(model, dataset, collate, batch_size)
    metrics = {"loss": emb["loss"].mean().item()}
    metrics.update(mutual_retrieval(emb["speech_embeds"], emb["image_embeds"], emb["image_ids"]))
    if "parallel_embeds" in emb and "cascaded_embeds" in emb:  # a hybrid: each branch on its own
        for branch in ("parallel", "cascaded"):
            recall = mutual_retrieval(emb[f"{branch}_embeds"], emb["image_embeds"], emb["image_ids"])
            metrics.update({f"{branch}_{k}": v for k, v in recall.items()})
    if text_retrieval:  # zero-shot text retrieval reads the parallel embedding where there is one (§7.3)
        text_embeds = torch.cat([model.encode_text(emb["texts"][i: i + 256]).float().cpu()
                                 for i in range(0, len(emb["texts"]), 256)])
        metrics.update(paired_retrieval(emb.get("parallel_embeds", emb["speech_embeds"]), text_embeds,
                                        "speech", "text"))
    if "keyword_embeds" in emb:
        metrics.update(keyword_metrics(model, emb))
    if "quantity_target" in emb:
        lens, target = emb["keyword_lens"].float(), emb["quantity_target"].float()
        metrics.update(cif_tokens=lens.mean().item(), cif_target=target.mean().item(),
                       cif_count_error=(lens - target).abs().mean().item(),
                       quantity_loss=(emb["quantity"] - target).abs().mean().item())
    return metrics


def keyword_metrics(model, emb: dict) -> dict:
    """Per-slot and average hit rates with their exact chance levels, in three variants.

    kw_*: the reference measure (one of a slot's 5 nearest subwords is in the caption, §7.2);
    kw_content_*: the same against content words only; kw_top1_*: the slot's own pick (its nearest subword)
    against the caption's content words. With the synthetic corpus's small vocabulary (about 70 subwords) the
    reference measure's chance level is about 60%; the top-1 content measure's is near 12%, so it can show learning.
    *_prior is a stricter floor than chance: a slot that always names the split's most frequent words.
    CIF keywords (emb["keyword_lens"]) have no fixed slots: only the averages over fired keywords are reported.
    """
    candidates = len(model.clip.vocab_ids) - len(model.keyword_masked_positions)  # the subwords a slot can pick
    lens = emb.get("keyword_lens")
    out = {}
    for prefix, content, n in (("kw", False, NEIGHBOURS), ("kw_content", True, NEIGHBOURS), ("kw_top1", True, 1)):
        references = caption_subwords(model, emb["texts"], content_only=content)
        rates = keyword_hit_rate(keyword_neighbours(model, emb["keyword_embeds"], n), references, lens)
        out.update({f"{prefix}_{k[3:]}": v for k, v in rates.items()})
        out[f"{prefix}_chance"] = keyword_chance_rate(references, candidates, n)
        out[f"{prefix}_prior"] = keyword_prior_rate(references, n)
    return out


def keyword_table(model, emb: dict, rows: int = 10) -> list[dict]:
    """The first `rows` utterances' caption beside the subword each keyword slot selected."""
    table = []
    for i in range(min(rows, len(emb["texts"]))):
        ids = emb["keyword_ids"][i]
        words = model.clip.decode_vocab(ids[ids >= 0].tolist())  # CIF pads with -1 past N_i
        table.append({"uid": emb["uids"][i], "caption": emb["texts"][i],
                      **{f"kw_{k + 1}": w for k, w in enumerate(words)}})
    return table
