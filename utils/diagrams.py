"""Block diagrams of the two Transformers the book builds, drawn with matplotlib (chapter 00).

Each box names the chapter that builds it (right of the column); the shapes of the
tensors, in the book's notation (B, T, C, V), sit left of the column, clear of the
arrows and frames. Residual connections are drawn as the paths that skip each
sub-layer and join again at its add & norm (post-norm, the paper's encoder–decoder)
or at its ``+`` (pre-norm, the decoder-only model of chapter 11, which also ends its
stack with a final LayerNorm).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyBboxPatch

# Colours by kind of layer.
COLOURS = {
    "input": "#eeeeee",
    "embedding": "#fde2c8",
    "attention": "#f9c6c9",
    "norm": "#fff3b0",
    "feed-forward": "#c8e6fd",
    "output": "#d4f0d0",
}
LINE = "#444444"
RESIDUAL = "#2a7f62"
CROSS = "#b03a48"

BOX_W, BOX_H, GAP = 3.1, 0.42, 0.24
ADD_R = 0.15  # radius of a pre-norm "+" node
SIDE = BOX_W / 2 + 0.22  # x offset of the residual path, right of the column
FRAME = BOX_W / 2 + 0.38  # half-width of the dashed N× frame


def _box(ax, x, y, text, kind, chapter=None):
    patch = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                           boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=COLOURS[kind], edgecolor=LINE, linewidth=1)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5)
    if chapter is not None:
        ax.text(x + FRAME + 0.08, y, f"ch {chapter:02d}", ha="left", va="center", fontsize=7,
                color="#666666")


def _add(ax, x, y):
    ax.add_patch(Circle((x, y), ADD_R, facecolor="white", edgecolor=LINE, linewidth=1))
    ax.text(x, y, "+", ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, colour=LINE):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.1, shrinkA=0, shrinkB=0))


def _shape(ax, x, y, label):
    """A tensor's shape, left of the column (clear of arrows, boxes and frames)."""
    ax.text(x - FRAME - 0.1, y, label, ha="right", va="center", fontsize=7, color="#555555",
            family="monospace")


def _column(ax, x, y0, below, block, above, shapes, residuals, n_label="N×"):
    """Draw stages from the bottom up; returns each stage's (bottom, top) edges by name.

    ``below``, ``block`` and ``above`` are lists of (name, text, kind, chapter), with
    kind "add" for a "+" node; ``block`` gets the dashed N× frame. ``shapes`` maps a
    stage name to the shape of the tensor flowing into it; ``residuals`` lists
    (start, end): a path from the arrow entering ``start`` to the side of ``end``.
    """
    edges, entry = {}, {}
    y, previous_top, frame_bottom, frame_top = y0, None, None, None
    for part, stages in (("below", below), ("block", block), ("above", above)):
        if part == "block":
            frame_bottom = y - GAP / 2 - 0.04
        for name, text, kind, chapter in stages:
            half = ADD_R if kind == "add" else BOX_H / 2
            centre = y + half
            if previous_top is not None:
                _arrow(ax, (x, previous_top), (x, centre - half))
                entry[name] = (previous_top + centre - half) / 2
                if name in shapes:
                    _shape(ax, x, entry[name], shapes[name])
            if kind == "add":
                _add(ax, x, centre)
            else:
                _box(ax, x, centre, text, kind, chapter)
            edges[name] = (centre - half, centre + half, centre)
            previous_top = centre + half
            y = previous_top + GAP
        if part == "block":
            frame_top = previous_top + GAP / 2 + 0.04
    frame = FancyBboxPatch((x - FRAME, frame_bottom), 2 * FRAME, frame_top - frame_bottom,
                           boxstyle="round,pad=0.02,rounding_size=0.12", facecolor="none",
                           edgecolor="#888888", linestyle="--", linewidth=1)
    ax.add_patch(frame)
    ax.text(x - FRAME - 0.1, frame_bottom + 0.75 * (frame_top - frame_bottom), n_label, ha="right", va="center",
            fontsize=10, weight="bold")
    for start, end in residuals:
        y_from, y_to = edges[start][0] - 0.3 * GAP, edges[end][2]  # branch just below start
        reach = ADD_R if end.startswith("add") else BOX_W / 2
        ax.plot([x, x + SIDE, x + SIDE], [y_from, y_from, y_to], color=RESIDUAL, lw=1.1)
        _arrow(ax, (x + SIDE, y_to), (x + reach, y_to), colour=RESIDUAL)
    return edges


def _head(T):
    return [
        ("linear", "linear C → V", "output", 10),
        ("softmax", "softmax over the vocabulary", "output", 10),
        ("probs", "next-token probabilities", "input", None),
    ], {"linear": f"(B, {T}, C)", "softmax": f"(B, {T}, V)", "probs": f"(B, {T}, V)"}


def _inputs(tokens_label, chapter=None):
    return [
        ("tokens", tokens_label, "input", chapter),
        ("embed", "token embedding", "embedding", 2),
        ("position", "+ positional encoding", "embedding", 3),
    ]


def _legend(ax, x, y):
    ax.plot([x, x + 0.4], [y, y], color=RESIDUAL, lw=1.1)
    ax.text(x + 0.5, y, "residual path", fontsize=7, va="center", color=RESIDUAL)


def draw_transformer(kind: str = "encoder-decoder", ax=None):
    """The encoder–decoder Transformer (Vaswani et al., 2017) or the decoder-only model (GPT).

    The encoder–decoder is the paper's post-norm model (chapters 08–10); the
    decoder-only model is the pre-norm GPT of chapter 11: LayerNorm before each
    sub-layer, the residual added after it, and a final LayerNorm before the head.
    """
    if kind not in ("encoder-decoder", "decoder-only"):
        raise ValueError(f"kind must be 'encoder-decoder' or 'decoder-only', not {kind!r}")
    if ax is None:
        size = (9.6, 8.4) if kind == "encoder-decoder" else (5.4, 8.2)
        _, ax = plt.subplots(figsize=size)
    if kind == "encoder-decoder":
        xe, xd = 2.4, 8.1
        encoder_block = [
            ("self", "multi-head self-attention", "attention", 4),
            ("norm1", "add & norm", "norm", 7),
            ("ffn", "feed-forward (ReLU)", "feed-forward", 7),
            ("norm2", "add & norm", "norm", 7),
        ]
        enc = _column(ax, xe, 0.1, _inputs("source tokens", 1), encoder_block, [],
                      {"embed": "(B, T_enc)", "position": "(B, T_enc, C)", "self": "(B, T_enc, C)"},
                      [("self", "norm1"), ("ffn", "norm2")])
        decoder_block = [
            ("self", "masked multi-head self-attention", "attention", 5),
            ("norm1", "add & norm", "norm", 7),
            ("cross", "cross-attention (K, V: encoder)", "attention", 6),
            ("norm2", "add & norm", "norm", 7),
            ("ffn", "feed-forward (ReLU)", "feed-forward", 7),
            ("norm3", "add & norm", "norm", 7),
        ]
        head, head_shapes = _head("T_dec")
        y_dec = 0.1 + 2 * (BOX_H + GAP)
        dec = _column(ax, xd, y_dec, _inputs("target shifted right behind <SOS>"), decoder_block,
                      head, {"embed": "(B, T_dec)", "position": "(B, T_dec, C)",
                             "self": "(B, T_dec, C)", **head_shapes},
                      [("self", "norm1"), ("cross", "norm2"), ("ffn", "norm3")])
        # The encoder's output feeds every decoder block's cross-attention as keys and values.
        top, y_cross = enc["norm2"][1], dec["cross"][2]
        ax.plot([xe, xe], [top, y_cross], color=CROSS, lw=1.1)
        _arrow(ax, (xe, y_cross), (xd - BOX_W / 2, y_cross), colour=CROSS)
        ax.text((xe + xd - BOX_W / 2) / 2, y_cross + 0.06, "K, V: encoder output (B, T_enc, C)",
                fontsize=7, color=CROSS, ha="center", va="bottom", family="monospace")
        for x, name in ((xe, "ENCODER"), (xd, "DECODER")):
            ax.text(x, -0.05, name, ha="center", va="top", fontsize=10, weight="bold")
        _legend(ax, xe - 1.0, dec["probs"][2])
        ax.set_xlim(-0.6, 10.6)
        ax.set_ylim(-0.5, dec["probs"][1] + 0.2)
        ax.set_title("The encoder–decoder Transformer (post-norm, as in the paper)")
    else:
        block = [
            ("norm1", "LayerNorm", "norm", 7),
            ("self", "masked multi-head self-attention", "attention", 5),
            ("add1", "+", "add", None),
            ("norm2", "LayerNorm", "norm", 7),
            ("ffn", "feed-forward (ReLU)", "feed-forward", 7),
            ("add2", "+", "add", None),
        ]
        head, head_shapes = _head("T")
        above = [("final", "final LayerNorm", "norm", 7), *head]
        head_shapes["final"] = head_shapes["linear"]
        dec = _column(ax, 2.3, 0.1, _inputs("tokens so far", 1), block, above,
                      {"embed": "(B, T)", "position": "(B, T, C)", "norm1": "(B, T, C)",
                       **head_shapes},
                      [("norm1", "add1"), ("norm2", "add2")])
        ax.text(2.3, -0.05, "DECODER-ONLY (GPT, pre-norm)", ha="center", va="top", fontsize=10,
                weight="bold")
        _legend(ax, -0.4, dec["probs"][2])
        ax.set_xlim(-0.7, 4.9)
        ax.set_ylim(-0.5, dec["probs"][1] + 0.2)
        ax.set_title("The decoder-only language model")
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
