"""Where CIF fires against where words end: boundary precision, recall and F1 with a tolerance, and repeats.

SpeechCLIP+ (Cascaded+, §5.1, §5.3) emits a keyword each time the integrated weight crosses the threshold; the
frame where it crosses is its firing position. A synthetic corpus knows every word's time (the CTM), so the firing
positions can be scored as a word segmentation:

- predicted boundaries: the firing frames turned into seconds, at the centre of each frame (`frames_to_times`);
- reference boundaries: word ends from the CTM (a keyword fires once its content is integrated, so its natural
  counterpart is the end of a word), or word starts, or both (`word_boundaries`);
- one-to-one greedy matching, nearest pairs first, a pair counting only within the tolerance, as is standard in
  word-segmentation evaluation (`match_boundaries`); precision, recall and F1 from the summed counts over
  utterances (`boundary_scores`);
- a baseline that fires the same number of times per utterance at evenly spaced frames (`even_fire_frames`), and
  the frame-grid ceiling: every reference moved to the centre of its own frame (`frame_oracle_frames`).

A frame of pooled features lasts 1 / frame_rate seconds (pocket: 4 HuBERT frames, 12.5 Hz, 80 ms); a firing
position is only known to the frame, so its centre is up to half a frame (40 ms) from a boundary inside it, and a
20 ms tolerance can at best catch the boundaries that lie in the middle half of their frames.

`duplicate_rates` measures how often CIF keywords repeat a subword. Introduced in notebooks/20_cif.ipynb.
"""
from __future__ import annotations

from collections.abc import Sequence

WHICH = ("ends", "starts", "both")


def frames_to_times(frames: Sequence[int], frame_rate: float, where: float = 0.5) -> list[float]:
    """Frame indices -> seconds: `where` = 0.5 is a frame's centre, 0 its start, 1 its end. Negative ids (no
    token) are dropped."""
    return [(int(f) + where) / frame_rate for f in frames if int(f) >= 0]


def word_boundaries(alignment: Sequence[tuple[str, float, float]], which: str = "ends",
                    merge_s: float = 1e-3) -> list[float]:
    """Reference boundaries (seconds, sorted) from one utterance's (word, start_s, end_s) alignment.

    which: "ends" (each word's end), "starts" (each word's start) or "both"; times closer than merge_s (a word
    that starts where the previous one ends) count once.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    times = sorted([e for _, _, e in alignment] * (which != "starts") + [s for _, s, _ in alignment] * (which != "ends"))
    out: list[float] = []
    for t in times:
        if not out or t - out[-1] > merge_s:
            out.append(t)
    return out


def match_boundaries(predicted: Sequence[float], reference: Sequence[float], tolerance: float) -> int:
    """Hits of a one-to-one greedy matching: pairs taken nearest first, each boundary used at most once, a pair
    counting only when |predicted - reference| <= tolerance (seconds)."""
    pairs = sorted((abs(p - r), i, j) for i, p in enumerate(predicted) for j, r in enumerate(reference)
                   if abs(p - r) <= tolerance + 1e-9)
    used_p, used_r, hits = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
            hits += 1
    return hits


def precision_recall_f1(hits: int, n_predicted: int, n_reference: int) -> dict:
    """Percentages; 0 where a denominator is 0."""
    p = 100 * hits / n_predicted if n_predicted else 0.0
    r = 100 * hits / n_reference if n_reference else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def boundary_scores(predicted: Sequence[Sequence[float]], reference: Sequence[Sequence[float]],
                    tolerance: float) -> dict:
    """Precision, recall and F1 (percent) over a set of utterances, from hits and counts summed over them (micro),
    with the counts themselves."""
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predicted against {len(reference)} reference utterances")
    hits = sum(match_boundaries(p, r, tolerance) for p, r in zip(predicted, reference))
    n_p, n_r = sum(len(p) for p in predicted), sum(len(r) for r in reference)
    return {**precision_recall_f1(hits, n_p, n_r), "hits": hits, "predicted": n_p, "reference": n_r}


def even_fire_frames(n: int, num_frames: int) -> list[int]:
    """n firing frames evenly spaced over num_frames: the frame where the k-th of n equal shares ends (the last is
    the final frame), as CIF would fire with a constant weight n / num_frames per frame."""
    if n <= 0 or num_frames <= 0:
        return []
    return [min(num_frames - 1, max(0, -(-(k + 1) * num_frames // n) - 1)) for k in range(n)]


def frame_oracle_frames(reference: Sequence[float], frame_rate: float, num_frames: int) -> list[int]:
    """The frame that holds each reference boundary: the best any frame-level firing can do (its ceiling)."""
    return [min(num_frames - 1, max(0, int(t * frame_rate))) for t in reference]


def duplicate_rates(keyword_ids: Sequence[Sequence[int]]) -> dict:
    """How often an utterance's keywords repeat a subword (ids < 0, unfired slots, are ignored), in percent.

    consecutive: of the adjacent keyword pairs, the share whose two keywords are the same subword;
    any: of all keywords, the share whose subword already appeared earlier in the same utterance
    (= 1 - distinct / fired); also the mean fired and distinct keywords per utterance.
    """
    pairs = same = fired = repeats = distinct = 0
    for row in keyword_ids:
        ids = [int(i) for i in row if int(i) >= 0]
        pairs += max(0, len(ids) - 1)
        same += sum(a == b for a, b in zip(ids, ids[1:]))
        fired += len(ids)
        distinct += len(set(ids))
        repeats += len(ids) - len(set(ids))
    n = max(1, len(keyword_ids))
    return {"consecutive": 100 * same / pairs if pairs else 0.0, "any": 100 * repeats / fired if fired else 0.0,
            "keywords_per_utterance": fired / n, "distinct_per_utterance": distinct / n}
