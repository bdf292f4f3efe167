"""Pictures the book draws again and again: heatmaps and loss curves (chapter 00 on).

Each function draws on a matplotlib ``Axes`` (made for you when not given) and
returns it, so chapters can combine them into larger figures.
"""

from __future__ import annotations

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
