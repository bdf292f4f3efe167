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


def test_bleu_components_one_bar_per_order_and_score():
    from utils.bleu import corpus_bleu
    from utils.plots import bleu_components

    references = ["a dog runs in the snow .", "two men talk ."]
    scores = {"greedy": corpus_bleu(["a dog runs .", "two men ."], references),
              "beam 5": corpus_bleu(["a dog runs in the white snow .", "two men talk ."], references)}
    ax = bleu_components(scores)
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [round(p, 6) for s in scores.values() for p in s.precisions]  # 2 x 4 bars, in order
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"greedy: BLEU {scores['greedy'].score:.2f}, BP {scores['greedy'].brevity_penalty:.3f}"
    assert scores["greedy"].brevity_penalty < 1 == scores["beam 5"].brevity_penalty  # the short one is penalised
    with pytest.raises(ValueError, match="at least one score"):
        bleu_components({})
    with pytest.raises(ValueError, match="score 'x' has no precisions, brevity_penalty, score"):
        bleu_components({"x": 31.2})
    plt.close("all")


def test_next_token_window_draws_each_input_above_its_target():
    from utils.plots import next_token_window

    ax = next_token_window("ab c\n", "b c\nd")
    texts = [t.get_text() for t in ax.texts if t.get_text()]  # the arrows have no text
    assert texts == ["a", "b", "␣", "c", "⏎", "b", "␣", "c", "⏎", "d"]  # inputs row, then targets row
    with pytest.raises(ValueError, match="differ in length: 3 and 2"):
        next_token_window("abc", "bc")
    plt.close("all")


def test_training_curves_mark_clipped_steps_and_keep_close_baseline_labels_apart():
    from utils.plots import training_curves

    steps = list(range(200))
    norms = [3.0 if s in (0, 1, 50) else 0.5 for s in steps]
    norms[7] = None  # a skipped step
    history = {"step": steps, "train_loss": [4.0 - s / 100 for s in steps], "lr": [1e-3] * 200,
               "grad_norm": norms, "eval_step": [0, 100, 199], "val_loss": [4.1, 3.2, 2.3]}
    fig = training_curves(history, window=10, grad_clip=1.0,
                          baselines={"bigram": 2.50, "counted bigram": 2.484, "uniform": 4.17})
    loss_ax, lr_ax, norm_ax = fig.axes[:3]
    clipped = [line for line in norm_ax.get_lines() if line.get_label().startswith("clipped")]
    assert list(clipped[0].get_xdata()) == [0, 1, 50] and "(3 steps)" in clipped[0].get_label()
    assert list(loss_ax.get_lines()[1].get_xdata()) == [0, 100, 199]  # validation points
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in loss_ax.texts]
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    with pytest.raises(ValueError, match="no 'grad_norm'"):
        training_curves({"step": [0], "train_loss": [1.0], "lr": [1.0]})
    with pytest.raises(ValueError, match="window=50 needs at least 50 steps, got 3"):
        training_curves({"step": [0, 1, 2], "train_loss": [1.0] * 3, "lr": [1.0] * 3, "grad_norm": [1.0] * 3})
    plt.close("all")
