"""Figures the model notebooks show: training curves, retrievals, similarity, keyword hits and keyword attention.

Every function takes plain data (lists, tensors, arrays, paths), draws one figure and returns it; saving is the
caller's. Introduced in notebooks/10_parallel.ipynb (retrieval), notebooks/11_cascaded.ipynb (keywords) and
notebooks/20_cif.ipynb (CIF firing positions).
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["read_metrics", "plot_training_curve", "plot_recall_bars", "plot_retrievals",
           "plot_similarity_heatmap", "plot_keyword_hits", "plot_keyword_attention", "plot_firing_positions"]

HIT, MISS = "tab:green", "tab:red"


def read_metrics(metrics_jsonl: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (one JSON object per line)."""
    lines = Path(metrics_jsonl).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _series(rows: list[dict], split: str, key: str) -> tuple[list, list]:
    picked = [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
    return [s for s, _ in picked], [v for _, v in picked]


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)


def plot_training_curve(metrics_jsonl: str | Path, title: str = "") -> Figure:
    """Train/dev loss and dev recall (mean R@1, R@10) against optimizer steps, from a run's metrics.jsonl.

    A keyword model's run (rows with a codebook perplexity or keyword hits) gets a third panel: dev keyword top-1
    and top-5 hit rates, and the training batches' code perplexity (how many codes the keywords use) on its own axis.
    """
    rows = read_metrics(metrics_jsonl)
    keywords = any("code_perplexity" in r or "kw_top1_avg" in r for r in rows)
    fig, axes = plt.subplots(1, 3 if keywords else 2, figsize=(15 if keywords else 10, 3.4), sharex=True)
    ax_loss, ax_rec = axes[:2]
    for split, style in (("train", "-"), ("dev", "o--")):
        steps, values = _series(rows, split, "loss")
        if steps:
            ax_loss.plot(steps, values, style, label=f"{split} loss", ms=4)
    ax_loss.set(xlabel="optimizer step", ylabel="contrastive loss", title="loss")
    for key, style in (("mean_R@10", "o-"), ("mean_R@1", "s-")):
        steps, values = _series(rows, "dev", key)
        if steps:
            ax_rec.plot(steps, values, style, label=f"dev {key}", ms=4)
    ax_rec.set(xlabel="optimizer step", ylabel="recall (%)", title="dev retrieval", ylim=(0, 100))
    if keywords:
        ax_kw = axes[2]
        for key, style, name in (("kw_avg", "o-", "top-5 hit rate"), ("kw_top1_avg", "s-", "top-1 content word")):
            steps, values = _series(rows, "dev", key)
            if steps:
                ax_kw.plot(steps, values, style, label=f"dev {name}", ms=4)
        ax_kw.set(xlabel="optimizer step", ylabel="keyword hits (%)", title="keywords", ylim=(0, 100))
        steps, values = _series(rows, "train", "code_perplexity")
        handles = ax_kw.get_lines()
        if steps:
            ax_ppl = ax_kw.twinx()
            ax_ppl.plot(steps, values, color="0.5", lw=1, label="train code perplexity")
            ax_ppl.set_ylabel("code perplexity (codes in use)")
            ax_ppl.set_ylim(bottom=0)
            handles = [*handles, *ax_ppl.get_lines()]
        if handles:  # one legend for both axes, where the curves usually leave room
            ax_kw.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="center right")
        ax_kw.grid(alpha=0.3)
    for ax in axes[:2]:
        if ax.has_data():
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_recall_bars(rows: dict[str, Sequence[float]], ks: Sequence[str] = ("R@1", "R@5", "R@10"),
                     title: str = "") -> Figure:
    """Grouped bars: one group per recall cut-off, one bar per named row (model, chance, topline, ...)."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(ks))
    for i, (name, values) in enumerate(rows.items()):
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, list(ks))
    ax.set(ylabel="recall (%)", ylim=(0, 105), title=title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _image_array(image) -> np.ndarray:
    """A path, PIL image, (H, W, 3) array or (3, H, W) tensor -> (H, W, 3) array for imshow."""
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    arr = _to_numpy(image) if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    return arr


def plot_retrievals(queries: Sequence[str], ranked_images: Sequence[Sequence], correct: Sequence[Sequence[bool]],
                    scores: Sequence[Sequence[float]] | None = None, title: str = "") -> Figure:
    """One row per query caption: its top-k retrieved images, the correct image framed green, others red."""
    n, k = len(queries), max(len(r) for r in ranked_images)
    fig, axes = plt.subplots(n, k + 1, figsize=(1.9 * (k + 1), 1.9 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1.6] + [1] * k})
    for row, (query, images, hits) in enumerate(zip(queries, ranked_images, correct)):
        text_ax = axes[row, 0]
        text_ax.axis("off")
        text_ax.text(0, 0.5, "\n".join(textwrap.wrap(f'"{query}"', 26)), va="center", fontsize=8)
        for col in range(k):
            ax = axes[row, col + 1]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(images):
                ax.axis("off")
                continue
            ax.imshow(_image_array(images[col]))
            for spine in ax.spines.values():
                spine.set(color=HIT if hits[col] else MISS, linewidth=4 if hits[col] else 1.5)
            label = f"#{col + 1}" + (f"  {scores[row][col]:.2f}" if scores is not None else "")
            ax.set_title(label + ("  ✓" if hits[col] else ""), fontsize=8, color=HIT if hits[col] else "black")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_similarity_heatmap(sim, row_labels: Sequence[str], col_labels: Sequence[str],
                            targets: Sequence[int] | None = None, title: str = "") -> Figure:
    """Cosine similarities (rows = utterances, columns = images); dots mark each row's true image."""
    sim = _to_numpy(sim)
    fig, ax = plt.subplots(figsize=(1.2 + 0.32 * sim.shape[1] + 2.5, 1.0 + 0.3 * sim.shape[0]))
    im = ax.imshow(sim, cmap="viridis", aspect="auto")
    if targets is not None:
        ax.scatter(list(targets), range(len(targets)), s=18, c="white", edgecolors="black", label="true image")
        best = sim.argmax(1)
        ax.scatter(best, range(len(best)), s=40, marker="x", c="red", label="top-1")
        fig.legend(fontsize=7, loc="lower left", ncol=2, frameon=False)
    ax.set_yticks(range(len(row_labels)), [textwrap.shorten(s, 38) for s in row_labels], fontsize=7)
    ax.set_xticks(range(len(col_labels)), list(col_labels), fontsize=7, rotation=90)
    ax.set(xlabel="image", ylabel="utterance (its caption)", title=title)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="cosine")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_keyword_hits(per_slot: Sequence[float], paper_per_slot: dict[str, Sequence[float]] | None = None,
                      chance: float | None = None,
                      title: str = "Keyword hit rate per slot (top-5 subwords)") -> Figure:
    """Bars of this run's per-slot keyword hit rate (%) beside published per-slot rates and a chance floor."""
    series = {"this run": list(per_slot), **(paper_per_slot or {})}
    slots = len(per_slot)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * slots, 3.8))
    width = 0.8 / len(series)
    x = np.arange(slots)
    for i, (name, values) in enumerate(series.items()):
        values = list(values)[:slots]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=f"{name} (mean {np.mean(values):.1f})",
               hatch=None if i == 0 else "//", alpha=1 if i == 0 else 0.6, color=f"C{i}")
        ax.axhline(np.mean(values), color=f"C{i}", lw=0.8, ls=":")
    if chance is not None:
        ax.axhline(chance, color="black", lw=1.2, ls="--", label=f"chance: 5 random subwords ({chance:.1f})")
    ax.set_xticks(x, [f"kw{k + 1}" for k in range(slots)])
    ax.set(ylabel="hit rate (%)", ylim=(0, 105), title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_keyword_attention(attention, alignment: Sequence[tuple[str, float, float]] | None = None,
                           keyword_labels: Sequence[str] | None = None, frame_rate: float = 50.0,
                           title: str = "") -> Figure:
    """Keyword-to-frame attention (K, T) over time, with the utterance's word boundaries from its CTM."""
    att = _to_numpy(attention)
    k, t = att.shape
    seconds = t / frame_rate
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * seconds), 0.9 + 0.32 * k))
    im = ax.imshow(att, aspect="auto", cmap="magma", extent=(0, seconds, k - 0.5, -0.5), interpolation="nearest")
    labels = keyword_labels or [f"kw{i + 1}" for i in range(k)]
    ax.set_yticks(range(k), [f"kw{i + 1}: {w}" if keyword_labels else w for i, w in enumerate(labels)], fontsize=8)
    for word, start, end in alignment or []:
        ax.axvline(start, color="white", lw=0.6, alpha=0.8)
        ax.axvline(end, color="cyan", lw=0.6, ls=":", alpha=0.8)
    top = ax.secondary_xaxis("top")
    words = list(alignment or [])
    top.set_xticks([(s + e) / 2 for _, s, e in words], [w for w, _, _ in words], fontsize=8, rotation=45)
    ax.set(xlabel="time (s)", xlim=(0, seconds))
    if title:
        ax.set_title(title, fontsize=9, pad=28)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="attention")
    fig.tight_layout()
    return fig


def plot_firing_positions(rows: Sequence[dict], title: str = "") -> Figure:
    """One panel per utterance: log-mel spectrogram, true word ends (white, dashed) and CIF firing positions (cyan,
    labelled with their keyword), the CIF weights alpha per frame below, evenly spaced fires as grey ticks.

    Each row: mel (n_mels, F) log values, seconds, alignment [(word, start_s, end_s)], fire_times [s],
    keywords [str] (one per fire), alpha (T,), frame_rate, even_times [s], text.
    """
    fig, axes = plt.subplots(2 * len(rows), 1, figsize=(11, 3.4 * len(rows)), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * len(rows)})
    for n, row in enumerate(rows):
        ax, ax_a = axes[2 * n, 0], axes[2 * n + 1, 0]
        mel, seconds = _to_numpy(row["mel"]), row["seconds"]
        ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
        for word, start, end in row.get("alignment") or []:
            ax.axvline(end, color="white", lw=1.0, ls="--")
            ax.text((start + end) / 2, mel.shape[0] * 0.9, word, color="white", ha="center", fontsize=8)
        for t, kw in zip(row["fire_times"], row.get("keywords") or [""] * len(row["fire_times"])):
            ax.axvline(t, color="cyan", lw=1.4)
            ax.text(t, mel.shape[0] * 0.05, kw, color="cyan", rotation=90, fontsize=8, ha="right", va="bottom")
        for t in row.get("even_times", []):
            ax.plot([t], [mel.shape[0] * 0.75], marker="v", color="0.8", ms=5)
        ax.set(xlim=(0, seconds), ylabel="mel bin", xticks=[])
        ax.set_title(row.get("text", ""), fontsize=9)
        alpha = _to_numpy(row["alpha"])
        starts = np.arange(len(alpha)) / row["frame_rate"]
        ax_a.bar(starts, alpha, width=1 / row["frame_rate"], align="edge", color="tab:blue", alpha=0.7)
        for t in row["fire_times"]:
            ax_a.axvline(t, color="tab:cyan", lw=1.0)
        ax_a.set(xlim=(0, seconds), ylim=(0, 1.05), ylabel="alpha", xlabel="time (s)" if n == len(rows) - 1 else "")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
