"""Boundary scores of CIF firing positions (speechclip.boundaries) on examples worked by hand."""
import pytest

from speechclip.boundaries import (boundary_scores, duplicate_rates, even_fire_frames, frame_oracle_frames,
                                   frames_to_times, match_boundaries, precision_recall_f1, word_boundaries)

ALIGNMENT = [("a", 0.10, 0.30), ("red", 0.30, 0.62), ("circle", 0.80, 1.20)]


def test_frames_to_times_at_frame_centres_dropping_unfired():
    assert frames_to_times([0, 2, -1], 12.5) == pytest.approx([0.04, 0.20])
    assert frames_to_times([3], 12.5, where=1.0) == pytest.approx([0.32])


def test_word_boundaries_ends_starts_and_both_merge_touching_words():
    assert word_boundaries(ALIGNMENT) == [0.30, 0.62, 1.20]
    assert word_boundaries(ALIGNMENT, "starts") == [0.10, 0.30, 0.80]
    assert word_boundaries(ALIGNMENT, "both") == [0.10, 0.30, 0.62, 0.80, 1.20]  # 0.30 once
    with pytest.raises(ValueError):
        word_boundaries(ALIGNMENT, "middles")


def test_matching_is_one_to_one_and_nearest_first():
    # two predictions near one reference: only one hit; the nearer (0.31) takes it
    assert match_boundaries([0.28, 0.31], [0.30], 0.05) == 1
    # greedy nearest first: 0.35 pairs with 0.36 (0.01), leaving 0.30 for 0.27 (0.03), both within 0.05
    assert match_boundaries([0.27, 0.35], [0.30, 0.36], 0.05) == 2
    # tolerance is inclusive; outside it nothing matches
    assert match_boundaries([0.35], [0.30], 0.05) == 1
    assert match_boundaries([0.36], [0.30], 0.05) == 0
    assert match_boundaries([], [0.3], 0.05) == 0


def test_precision_recall_f1_by_hand():
    assert precision_recall_f1(2, 4, 2) == pytest.approx({"precision": 50.0, "recall": 100.0, "f1": 200 / 3})
    assert precision_recall_f1(0, 0, 3) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_boundary_scores_sum_counts_over_utterances():
    predicted = [[0.29, 0.70, 1.19], [0.5]]
    reference = [[0.30, 0.62, 1.20], [0.1, 0.9]]
    at_20ms = boundary_scores(predicted, reference, 0.02)  # hits: 0.29, 1.19 -> 2 of 4 predicted, 2 of 5 reference
    assert (at_20ms["hits"], at_20ms["predicted"], at_20ms["reference"]) == (2, 4, 5)
    assert at_20ms["precision"] == pytest.approx(50.0) and at_20ms["recall"] == pytest.approx(40.0)
    at_100ms = boundary_scores(predicted, reference, 0.1)  # 0.70 now matches 0.62
    assert at_100ms["hits"] == 3
    with pytest.raises(ValueError):
        boundary_scores(predicted, reference[:1], 0.02)


def test_even_fire_frames_same_count_evenly_spaced_ending_on_the_last_frame():
    assert even_fire_frames(2, 10) == [4, 9]
    assert even_fire_frames(4, 4) == [0, 1, 2, 3]
    assert even_fire_frames(3, 10) == [3, 6, 9]
    assert even_fire_frames(0, 10) == [] and even_fire_frames(3, 0) == []


def test_frame_grid_limits_precision_at_20ms():
    # 12.5 Hz frames (80 ms): a boundary at 0.30 s lies in frame 3 (0.24-0.32), whose centre 0.28 is 20 ms away;
    # one at 0.25 s lies in the same frame, 30 ms from its centre: even the frame oracle misses it at 20 ms.
    frames = frame_oracle_frames([0.30, 0.25], 12.5, num_frames=10)
    assert frames == [3, 3]
    times = frames_to_times(frames, 12.5)
    assert match_boundaries(times, [0.30, 0.25], 0.02) == 1
    assert match_boundaries(times, [0.30, 0.25], 0.05) == 2
    assert frame_oracle_frames([5.0], 12.5, num_frames=10) == [9]  # clipped to the last frame


def test_duplicate_rates_consecutive_and_any_ignore_unfired():
    rates = duplicate_rates([[5, 5, 7, 5, -1, -1], [1, 2, 3]])
    # pairs: (5,5) (5,7) (7,5) | (1,2) (2,3): 1 of 5 consecutive; repeats: 5 twice more -> 2 of 7 keywords
    assert rates["consecutive"] == pytest.approx(20.0)
    assert rates["any"] == pytest.approx(100 * 2 / 7)
    assert rates["keywords_per_utterance"] == pytest.approx(3.5)
    assert rates["distinct_per_utterance"] == pytest.approx(2.5)
    assert duplicate_rates([[-1], []])["any"] == 0.0
