"""Every figure function draws from small fake inputs and returns a matplotlib Figure (fast, headless)."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from speechclip import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_training_curve_reads_train_and_dev_rows(tmp_path):
    rows = [{"step": s, "epoch": 0, "split": "train", "loss": 3.0 - 0.1 * s} for s in range(1, 6)]
    rows += [{"step": 5, "epoch": 0, "split": "dev", "loss": 2.6, "mean_R@1": 20.0, "mean_R@10": 55.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fig = plots.plot_training_curve(path, title="smoke")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 2


def test_training_curve_with_no_train_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 6, "split": "dev", "loss": 2.0, "mean_R@10": 40.0}) + "\n")
    assert isinstance(plots.plot_training_curve(path), Figure)


def test_recall_bars():
    fig = plots.plot_recall_bars({"model": [10, 30, 50], "chance": [1, 5, 10]}, title="speech→image")
    assert isinstance(fig, Figure)


def test_retrievals_accepts_paths_arrays_and_tensors(tmp_path):
    from PIL import Image

    path = tmp_path / "a.jpg"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    images = [path, np.zeros((16, 16, 3), dtype=np.uint8), torch.rand(3, 16, 16)]
    fig = plots.plot_retrievals(["a red square", "a blue circle"], [images, images[:2]],
                                [[True, False, False], [False, True]], scores=[[0.9, 0.5, 0.1], [0.4, 0.3]])
    assert isinstance(fig, Figure)


def test_similarity_heatmap_marks_targets():
    sim = torch.randn(6, 4)
    fig = plots.plot_similarity_heatmap(sim, [f"caption {i}" for i in range(6)], [f"img{j}" for j in range(4)],
                                        targets=[0, 0, 1, 2, 3, 3], title="cosine")
    assert isinstance(fig, Figure)


def test_keyword_hits_with_and_without_paper_numbers():
    per_slot = [50.0, 20.0, 10.0, 5.0, 30.0, 40.0, 15.0, 25.0]
    assert isinstance(plots.plot_keyword_hits(per_slot), Figure)
    paper = {"paper Base (Flickr8k)": [57.0, 25.6, 20.2, 5.0, 20.0, 26.5, 10.5, 16.6]}
    assert isinstance(plots.plot_keyword_hits(per_slot, paper, chance=12.5), Figure)


def test_keyword_attention_with_alignment():
    attention = torch.softmax(torch.randn(8, 120), dim=-1)
    alignment = [("a", 0.1, 0.2), ("red", 0.2, 0.6), ("square", 0.6, 1.1)]
    fig = plots.plot_keyword_attention(attention, alignment, keyword_labels=list("abcdefgh"), title="utt")
    assert isinstance(fig, Figure)
    assert isinstance(plots.plot_keyword_attention(attention.numpy()), Figure)
