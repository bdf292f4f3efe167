"""utils.plots and utils.diagrams draw without error and reject bad input clearly."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from utils.diagrams import draw_attention_head, draw_multi_head_split, draw_transformer  # noqa: E402
from utils.plots import attention_heatmaps, heatmap, loss_curves  # noqa: E402


def test_heatmap_labels_and_errors():
    ax = heatmap(torch.rand(3, 4), xlabels=list("abcd"), ylabels=list("xyz"), annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    with pytest.raises(ValueError, match="2-D"):
        heatmap(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="3 labels for an axis of length 4"):
        heatmap(torch.rand(3, 4), xlabels=list("abc"))
    plt.close("all")


def test_attention_heatmaps_one_panel_per_head():
    weights = torch.softmax(torch.randn(6, 5, 5), -1)
    fig = attention_heatmaps(weights, tokens=list("hello"), columns=4)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    with pytest.raises(ValueError, match="n_heads, T_q, T_k"):
        attention_heatmaps(torch.rand(1, 2, 3, 4))
    plt.close("all")


def test_loss_curves_and_diagrams():
    ax = loss_curves({"train": [3.0, 2.0], "val": [3.1, 2.2]}, steps=[0, 10], baselines={"uniform": 4.17})
    assert len(ax.get_lines()) == 3
    for kind in ("encoder-decoder", "decoder-only"):
        ax = draw_transformer(kind)
        texts = " ".join(t.get_text() for t in ax.texts)
        assert "masked multi-head self-attention" in texts
        assert ("cross-attention" in texts) == (kind == "encoder-decoder")
    with pytest.raises(ValueError, match="decoder-only"):
        draw_transformer("encoder-only")
    ax = draw_transformer("decoder-only")  # the book's pre-norm GPT: a final LayerNorm, "+" nodes
    assert "final LayerNorm" in " ".join(t.get_text() for t in ax.texts)
    ax = draw_attention_head()
    assert "(B, T, T)" in " ".join(t.get_text() for t in ax.texts)
    ax = draw_multi_head_split(T=3, n_heads=2, head_size=3)
    assert len(ax.patches) == 3 * 6 * 3 + 2 * 3 * 3 * 2  # three (T, C) grids and two sets of heads
    plt.close("all")


def test_plots_name_bad_arguments():  # issue 11
    assert heatmap([[1.0, 2.0], [3.0, 4.0]]).images  # nested lists are fine
    with pytest.raises(ValueError, match="1 titles for 3 heads"):
        attention_heatmaps(torch.rand(3, 2, 2), titles=["a"])
    with pytest.raises(ValueError, match="columns must be >= 1"):
        attention_heatmaps(torch.rand(3, 2, 2), columns=0)
    with pytest.raises(ValueError, match="curve 'train' has 3 values but 2 steps"):
        loss_curves({"train": [3.0, 2.0, 1.0]}, steps=[0, 10])
    plt.close("all")
