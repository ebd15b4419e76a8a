"""The helpers the notebooks share (speechclip.notebook): shape check, chance check, metrics JSON, figures."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from speechclip.metrics import chance_recall  # noqa: E402
from speechclip.notebook import assert_near_chance, chance_tolerance, check_shape, save_figure, save_metrics  # noqa: E402


def test_check_shape_returns_the_shape_and_names_a_mismatch():
    assert check_shape(torch.zeros(2, 3, 4), (2, 3, 4)) == (2, 3, 4)
    with pytest.raises(AssertionError, match=r"expected \(2, 4\), got \(2, 3\)"):
        check_shape(torch.zeros(2, 3), (2, 4))


def test_chance_tolerance_is_five_standard_errors_plus_two_points():
    p, n = 0.02, 500
    assert chance_tolerance(2.0, n) == pytest.approx(500 * math.sqrt(p * (1 - p) / n) + 2)
    assert chance_tolerance(2.0, n, n_se=0, slack=0) == 0


def test_assert_near_chance_accepts_chance_and_rejects_a_trained_model():
    n_images, n_utts = 100, 500
    chance = {"speech2image": chance_recall(n_images), "image2speech": chance_recall(n_utts, 5)}
    queries = {"speech2image": n_utts, "image2speech": n_images}
    at_chance = {f"{d}_{k}": v for d, ks in chance.items() for k, v in ks.items()}
    rows = assert_near_chance(at_chance, chance, queries)
    assert set(rows) == {(d, k) for d in chance for k in chance[d]}
    assert all(r["untrained"] == r["chance"] and r["tolerance"] > 2 for r in rows.values())
    trained = dict(at_chance, **{"speech2image_R@10": 60.0})
    with pytest.raises(AssertionError, match="speech2image"):
        assert_near_chance(trained, chance, queries)


def test_save_metrics_writes_json_under_metrics(tmp_path):
    out = save_metrics("99_demo", {"a": 1, "b": [1.5]}, tmp_path / "artifacts")
    assert out == tmp_path / "artifacts" / "metrics" / "99_demo.json"
    assert json.loads(out.read_text()) == {"a": 1, "b": [1.5]}
    assert save_metrics("99_demo", {"a": 1}, tmp_path, indent=2).read_text() == json.dumps({"a": 1}, indent=2)


def test_save_figure_creates_the_folder_and_returns_nothing(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "figures" / "99_demo.png"
    assert save_figure(fig, path, dpi=50) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_figure(fig, tmp_path / "99_plain.png", bbox_inches=None)
    plt.close(fig)
