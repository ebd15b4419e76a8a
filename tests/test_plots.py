"""Every figure function draws what it is given: the data, marks and labels are read back from the Figure."""
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


def _xy(line):
    return list(line.get_xdata()), list(line.get_ydata())


def test_training_curve_reads_train_and_dev_rows(tmp_path):
    rows = [{"step": s, "epoch": 0, "split": "train", "loss": 3.0 - 0.1 * s} for s in range(1, 6)]
    rows += [{"step": 5, "epoch": 0, "split": "dev", "loss": 2.6, "mean_R@1": 20.0, "mean_R@10": 55.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fig = plots.plot_training_curve(path, title="smoke")
    loss, recall = fig.axes
    train, dev = loss.lines
    assert _xy(train) == ([1, 2, 3, 4, 5], pytest.approx([2.9, 2.8, 2.7, 2.6, 2.5])) and _xy(dev) == ([5], [2.6])
    assert [_xy(line) for line in recall.lines] == [([5], [55.0]), ([5], [20.0])]  # mean R@10, then mean R@1
    assert [t.get_text() for t in recall.get_legend().get_texts()] == ["dev mean_R@10", "dev mean_R@1"]
    assert fig._suptitle.get_text() == "smoke"


def test_training_curve_with_no_train_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 6, "split": "dev", "loss": 2.0, "mean_R@10": 40.0}) + "\n")
    loss, recall = plots.plot_training_curve(path).axes
    assert [_xy(line) for line in loss.lines] == [([6], [2.0])] and [_xy(line) for line in recall.lines] == [([6], [40.0])]


def test_training_curve_of_a_keyword_model_adds_keyword_hits_and_code_perplexity(tmp_path):
    rows = [{"step": s, "split": "train", "loss": 3.0, "code_perplexity": 10.0 + s} for s in range(1, 4)]
    rows += [{"step": 3, "split": "dev", "loss": 2.6, "mean_R@1": 2.0, "mean_R@10": 9.0, "kw_avg": 70.0,
              "kw_top1_avg": 30.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loss, recall, keywords, perplexity = plots.plot_training_curve(path).axes
    assert [_xy(line) for line in keywords.lines] == [([3], [70.0]), ([3], [30.0])]
    assert [_xy(line) for line in perplexity.lines] == [([1, 2, 3], [11.0, 12.0, 13.0])]
    assert keywords.get_title() == "keywords"


def test_recall_bars():
    fig = plots.plot_recall_bars({"model": [10, 30, 50], "chance": [1, 5, 10]}, title="speech→image")
    ax = fig.axes[0]
    assert [bar.get_height() for bar in ax.patches] == [10, 30, 50, 1, 5, 10]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["R@1", "R@5", "R@10"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model", "chance"] and ax.get_title() == "speech→image"


def test_retrievals_accepts_paths_arrays_and_tensors(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"  # lossless, so the read pixels can be compared
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    images = [path, np.zeros((16, 16, 3), dtype=np.uint8), torch.rand(3, 16, 16)]
    fig = plots.plot_retrievals(["a red square", "a blue circle"], [images, images[:2]],
                                [[True, False, False], [False, True]], scores=[[0.9, 0.5, 0.1], [0.4, 0.3]])
    axes = np.array(fig.axes).reshape(2, 4)
    assert axes[0, 1].images[0].get_array()[0, 0].tolist() == [200, 30, 30]  # the path was read
    assert axes[0, 3].images[0].get_array().shape == (16, 16, 3)  # the (3, H, W) tensor was transposed
    assert axes[0, 1].get_title() == "#1  0.90  ✓" and axes[1, 1].get_title() == "#1  0.40"
    hit, miss = (matplotlib.colors.to_hex(a.spines["left"].get_edgecolor()) for a in (axes[0, 1], axes[0, 2]))
    assert (hit, miss) == (matplotlib.colors.to_hex(plots.HIT), matplotlib.colors.to_hex(plots.MISS))
    assert not axes[1, 3].axison  # the shorter row leaves its last cell empty


def test_similarity_heatmap_marks_targets():
    sim = torch.randn(6, 4)
    fig = plots.plot_similarity_heatmap(sim, [f"caption {i}" for i in range(6)], [f"img{j}" for j in range(4)],
                                        targets=[0, 0, 1, 2, 3, 3], title="cosine")
    ax = fig.axes[0]
    assert np.allclose(ax.images[0].get_array(), sim.numpy())
    truth, top1 = (c.get_offsets().tolist() for c in ax.collections)
    assert truth == [[t, r] for r, t in enumerate([0, 0, 1, 2, 3, 3])]
    assert top1 == [[int(c), r] for r, c in enumerate(sim.argmax(1))]


def test_keyword_hits_with_and_without_paper_numbers():
    per_slot = [50.0, 20.0, 10.0, 5.0, 30.0, 40.0, 15.0, 25.0]
    ax = plots.plot_keyword_hits(per_slot).axes[0]
    assert [b.get_height() for b in ax.patches] == per_slot
    assert ax.get_legend().get_texts()[0].get_text() == "this run (mean 24.4)"
    paper = {"paper Base (Flickr8k)": [57.0, 25.6, 20.2, 5.0, 20.0, 26.5, 10.5, 16.6]}
    ax = plots.plot_keyword_hits(per_slot, paper, chance=12.5).axes[0]
    assert [b.get_height() for b in ax.patches] == per_slot + paper["paper Base (Flickr8k)"]
    assert [line.get_ydata()[0] for line in ax.lines] == pytest.approx([24.375, 22.675, 12.5])  # means, chance


def test_keyword_attention_with_alignment():
    attention = torch.softmax(torch.randn(8, 120), dim=-1)
    alignment = [("a", 0.1, 0.2), ("red", 0.2, 0.6), ("square", 0.6, 1.1)]
    fig = plots.plot_keyword_attention(attention, alignment, keyword_labels=list("abcdefgh"), title="utt")
    ax = fig.axes[0]
    assert np.allclose(ax.images[0].get_array(), attention.numpy()) and ax.get_xlim() == (0, 2.4)  # 120 / 50 Hz
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [0.1, 0.2, 0.2, 0.6, 0.6, 1.1]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["kw1: a", "kw2: b"]
    assert isinstance(plots.plot_keyword_attention(attention.numpy()), Figure)
