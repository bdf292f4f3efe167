"""Pictures the book draws again and again: heatmaps and loss curves (chapter 00 on).

Each function draws on a matplotlib ``Axes`` (made for you when not given) and
returns it, so chapters can combine them into larger figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from utils.checks import check_int


def _axes(ax=None, figsize=None):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def heatmap(
    matrix,
    ax=None,
    *,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    colorbar_label: str | None = None,
    annotate: bool = False,
):
    """A 2-D tensor or array as a coloured grid, with optional tick labels and values.

    ``colorbar_label`` names what the colours measure (e.g. "attention weight").
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().float().cpu().numpy()
    matrix = np.asarray(matrix)  # nested lists too
    if matrix.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    ax = _axes(ax)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.grid(False)
    for labels, set_ticks, set_labels, n in (
        (xlabels, ax.set_xticks, ax.set_xticklabels, matrix.shape[1]),
        (ylabels, ax.set_yticks, ax.set_yticklabels, matrix.shape[0]),
    ):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"{len(labels)} labels for an axis of length {n}")
            set_ticks(range(n))
            set_labels(labels)
    if xlabels is not None:
        plt.setp(ax.get_xticklabels(), rotation=90)
    if annotate:
        middle = (matrix.max() + matrix.min()) / 2
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                colour = "black" if matrix[i, j] > middle else "white"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colorbar_label)
    return ax


def attention_heatmaps(
    weights,
    tokens: Sequence[str] | None = None,
    query_tokens: Sequence[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    columns: int = 4,
    size: float = 2.8,
    suptitle: str | None = None,
):
    """One heatmap per head of attention weights shaped (n_heads, T_q, T_k) or (T_q, T_k).

    Rows are queries (who is looking), columns are keys (who is looked at).
    ``tokens`` label the keys and, unless ``query_tokens`` is given, the queries too.
    """
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu()
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(f"expected weights of shape (n_heads, T_q, T_k), got {tuple(weights.shape)}")
    n = weights.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} heads (weights of shape {tuple(weights.shape)})")
    columns = min(check_int("columns", columns, minimum=1), n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns + 0.6, size * rows + 0.4), squeeze=False,
                             layout="constrained")
    for h, ax in enumerate(axes.flat):
        if h >= n:
            ax.axis("off")
            continue
        heatmap(
            weights[h], ax,
            xlabels=tokens, ylabels=query_tokens if query_tokens is not None else tokens,
            title=titles[h] if titles else (f"head {h}" if n > 1 else None),
            vmin=0.0, vmax=1.0, colorbar=False,
        )
    fig.colorbar(axes.flat[0].images[0], ax=axes, fraction=0.02, pad=0.02, label="attention weight")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _host_numbers(values) -> list:
    """A tensor, or a list holding numbers and 0-d tensors on any device, as Python numbers."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().tolist()
    return [v.detach().float().cpu().item() if isinstance(v, torch.Tensor) else v for v in values]


def loss_curves(
    history: Mapping[str, Sequence[float]],
    ax=None,
    *,
    steps: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    title: str = "Loss",
    xlabel: str = "step",
    ylabel: str = "cross-entropy (nats)",
    baselines: Mapping[str, float] | None = None,
    logy: bool = False,
):
    """Curves such as {'train': [...], 'val': [...]} against steps, with dashed reference lines."""
    ax = _axes(ax)
    for name, values in history.items():
        values = _host_numbers(values)  # a history kept as tensors on a GPU, read once here
        xs = steps.get(name) if isinstance(steps, Mapping) else steps
        xs = list(xs) if xs is not None else list(range(len(values)))
        if len(xs) != len(values):
            raise ValueError(f"curve {name!r} has {len(values)} values but {len(xs)} steps")
        ax.plot(xs, list(values), label=name)
    for name, value in (baselines or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(f"{name} ({value:.2f})", xy=(0.99, value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8, color="grey")
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    return ax


def _visible(text: str) -> list[str]:
    """The characters of ``text``, with a line break shown as ⏎ and a space as ␣."""
    return ["⏎" if c == "\n" else "␣" if c == " " else c for c in text]


def next_token_window(inputs: str, targets: str, ax=None):
    """One training window (chapter 11): the inputs x in a row, each above its target y[t] = x[t + 1]."""
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} and {len(targets)} characters")
    ax = _axes(ax, figsize=(8.5, 2.2))
    rows = ((1, _visible(inputs), "#dbe9f6", "#4878a8"), (0, _visible(targets), "#fde3cf", "#c0703a"))
    for y, characters, face, edge in rows:
        for t, character in enumerate(characters):
            ax.text(t, y, character, ha="center", va="center", fontsize=13, family="monospace",
                    bbox=dict(boxstyle="square", facecolor=face, edgecolor=edge))
    for t in range(len(inputs)):
        ax.annotate("", xy=(t, 0.22), xytext=(t, 0.78), arrowprops=dict(arrowstyle="->", color="grey"))
    ax.set_yticks([0, 1], ["targets y", "inputs x"])
    ax.set_xticks(range(len(inputs)), [f"t={t}" for t in range(len(inputs))], fontsize=7)
    ax.set(xlim=(-0.7, len(inputs) - 0.3), ylim=(-0.5, 1.5),
           title="One window: at each position t, the model predicts y[t] = x[t+1]")
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return ax


def _label_baselines(ax, baselines: Mapping[str, float], gap: float = 0.05) -> None:
    """Dashed horizontal lines, each labelled at the right; when two lie closer than ``gap`` of the
    axis' height, the lower one's label goes below its line, so the labels never print on each other."""
    low, high = ax.get_ylim()
    ordered = sorted(baselines.items(), key=lambda item: item[1])
    for i, (name, value) in enumerate(ordered):
        crowded = i + 1 < len(ordered) and (ordered[i + 1][1] - value) < gap * (high - low)
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(f"{name} ({value:.2f})", xy=(0.99, value), xycoords=("axes fraction", "data"),
                    ha="right", va="top" if crowded else "bottom", fontsize=8, color="grey")


def training_curves(
    history: Mapping[str, Sequence],
    *,
    window: int = 50,
    grad_clip: float | None = None,
    baselines: Mapping[str, float] | None = None,
    title: str = "Training",
):
    """A trainer's history (chapter 11's ``Trainer``) in three panels over the same steps.

    * the training loss, as a moving average of ``window`` batches, and the validation
      loss at ``history["eval_step"]`` (points joined by a line), with dashed
      ``baselines`` whose labels never overlap;
    * the learning rate (``history["lr"]``);
    * the gradient norm before clipping (``history["grad_norm"]``), the
      clipping limit ``grad_clip`` and, in red, the steps where clipping fired.

    Values may be floats, ``None`` (a skipped step) or one-number tensors. Returns the figure.
    """
    window = check_int("window", window, minimum=1)
    for key in ("step", "train_loss", "lr", "grad_norm"):
        if key not in history:
            raise ValueError(f"history has no {key!r}; expected a Trainer's history (keys {sorted(history)})")
    number = lambda v: math.nan if v is None else float(v)  # noqa: E731
    steps = np.array([number(s) for s in history["step"]])
    losses = np.array([number(v) for v in history["train_loss"]])
    if len(losses) < window:
        raise ValueError(f"a moving average of window={window} needs at least {window} steps, got {len(losses)}")
    fig, (loss_ax, lr_ax, norm_ax) = plt.subplots(
        3, 1, figsize=(7.5, 6.4), sharex=True, height_ratios=(2.2, 1, 1.3), layout="constrained")
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    loss_ax.plot(steps[window - 1:], smooth, label=f"train (mean of {window} batches)")
    if history.get("val_loss"):
        loss_ax.plot([number(s) for s in history["eval_step"]], [number(v) for v in history["val_loss"]], "o-",
                     label="validation (whole split)")
    loss_ax.set(ylabel="cross-entropy (nats)", title=title)
    if baselines:
        values = [*baselines.values(), *smooth, *(number(v) for v in history.get("val_loss", []))]
        spread = max(values) - min(values)
        loss_ax.set_ylim(min(values) - 0.05 * spread, max(values) + 0.08 * spread)
        _label_baselines(loss_ax, baselines)
    loss_ax.legend(loc="upper center")
    lr_ax.plot(steps, [number(v) for v in history["lr"]], color="C2")
    lr_ax.set(ylabel="learning rate")
    norms = np.array([number(v) for v in history["grad_norm"]])
    norm_ax.plot(steps, norms, color="C4", linewidth=0.8, label="gradient norm before clipping")
    if grad_clip is not None:
        clipped = norms > grad_clip
        norm_ax.axhline(grad_clip, linestyle="--", linewidth=1, color="grey")
        norm_ax.plot(steps[clipped], norms[clipped], "o", color="C3", markersize=3,
                     label=f"clipped to {grad_clip:g} ({int(clipped.sum())} steps)")
    norm_ax.set(ylabel="gradient norm", xlabel="step")
    norm_ax.legend(loc="upper right", fontsize=8)
    return fig


def bleu_components(scores: Mapping[str, object], ax=None, *, title: str = "BLEU's components"):
    """BLEU's parts side by side (chapter 12): for each named score (e.g. {"greedy": ..., "beam 5": ...}),
    the n-gram precisions p_1..p_4 as bars, the brevity penalty and the score in the legend.

    A score is anything with ``precisions`` (four percentages), ``brevity_penalty`` and ``score``,
    such as :class:`utils.bleu.BLEU`.
    """
    if not scores:
        raise ValueError("bleu_components needs at least one score, e.g. {'greedy': corpus_bleu(...)}")
    for name, result in scores.items():
        missing = [a for a in ("precisions", "brevity_penalty", "score") if not hasattr(result, a)]
        if missing:
            raise ValueError(f"score {name!r} has no {', '.join(missing)}: pass utils.bleu.corpus_bleu's result")
    ax = _axes(ax, figsize=(6, 3))
    width = 0.8 / len(scores)
    for i, (name, result) in enumerate(scores.items()):
        positions = np.arange(len(result.precisions)) + (i - (len(scores) - 1) / 2) * width
        label = f"{name}: BLEU {result.score:.2f}, BP {result.brevity_penalty:.3f}"
        bars = ax.bar(positions, result.precisions, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(next(iter(scores.values())).precisions)))
    ax.set_xticklabels([f"$p_{n}$" for n in range(1, len(next(iter(scores.values())).precisions) + 1)])
    ax.set(title=title, ylabel="n-gram precision (%)", ylim=(0, 105))
    ax.legend(fontsize=8)
    return ax
