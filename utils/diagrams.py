"""Block diagrams of the two Transformers the book builds, drawn with matplotlib (chapters 00 and 04).

Each box names the chapter that builds it (right of the column); the shapes of the
tensors, in the book's notation (B, T, C, V), sit left of the column, clear of the
arrows and frames. Residual connections are drawn as the paths that skip each
sub-layer and join again at its add & norm (post-norm, the paper's encoder–decoder)
or at its ``+`` (pre-norm, the decoder-only model of chapter 11, which also ends its
stack with a final LayerNorm).

Chapter 04 adds two pictures of attention itself: one head's dataflow with the
shape of every tensor (``draw_attention_head``) and how multi-head attention splits
the channels into heads and concatenates them again (``draw_multi_head_split``).
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
        _legend(ax, 1.75, -0.55)  # under the column's name, clear of every box
        ax.set_xlim(-0.7, 4.9)
        ax.set_ylim(-0.75, dec["probs"][1] + 0.2)
        ax.set_title("The decoder-only language model")
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _node(ax, x, y, text, kind, width=1.5, height=0.62, fontsize=8):
    colour = {"tensor": "#eeeeee", "op": COLOURS["attention"], "linear": COLOURS["feed-forward"]}[kind]
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor=LINE, linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _link(ax, start, end, width=1.5):
    """An arrow from the right edge of the node at ``start`` to the left edge of the node at ``end``."""
    _arrow(ax, (start[0] + width / 2, start[1]), (end[0] - width / 2, end[1]))


def draw_attention_head(ax=None):
    """One attention head's dataflow with the shape of every tensor (chapter 04).

    x → three linear maps → q, k, v → scores q kᵀ/√d_k → softmax over the keys →
    weights @ v → the head's output. Self-attention: q, k and v all come from x.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.6))
    x_in = (0.8, 1.5)
    rows = {"q": 2.7, "k": 1.5, "v": 0.3}
    _node(ax, *x_in, "x\n(B, T, C)", "tensor")
    for name, y in rows.items():
        _node(ax, 2.8, y, f"W_{name.upper()}: Linear\nC → head_size", "linear")
        _node(ax, 4.8, y, f"{name}\n(B, T, head_size)", "tensor")
        _link(ax, x_in, (2.8, y))
        _link(ax, (2.8, y), (4.8, y))
    scores, weights, out = (6.9, 2.1), (8.9, 2.1), (10.9, 1.2)
    _node(ax, *scores, "scores = q kᵀ / √d_k\n(B, T, T)", "op", width=1.9)
    _node(ax, *weights, "softmax over keys\nweights (B, T, T)", "op", width=1.7)
    _node(ax, *out, "weights @ v\nout (B, T, head_size)", "op", width=1.9)
    _arrow(ax, (5.55, rows["q"]), (5.95, scores[1] + 0.12))
    _arrow(ax, (5.55, rows["k"]), (5.95, scores[1] - 0.12))
    _arrow(ax, (7.85, scores[1]), (8.05, weights[1]))
    _arrow(ax, (9.75, weights[1]), (9.95, out[1] + 0.12))
    _arrow(ax, (5.55, rows["v"]), (9.95, out[1] - 0.12))
    ax.text(7.3, 2.5, "row t: query t against every key s", ha="center", va="bottom", fontsize=7,
            color="#555555")
    ax.set_xlim(-0.1, 12.0)
    ax.set_ylim(-0.2, 3.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("One head of self-attention: Q, K and V all come from the same x")
    return ax


def draw_multi_head_split(T: int = 5, n_heads: int = 4, head_size: int = 2, ax=None):
    """How multi-head attention splits the C channels into heads and puts them back (chapter 04).

    One sequence's (T, C) activations, coloured by the head each channel goes to;
    split into n_heads (T, head_size) pieces (``view`` then ``transpose``), each
    attended alone, put side by side again (``transpose`` then ``reshape``: the
    concatenation), then mixed by the output projection W_O.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.4))
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    C, cell = n_heads * head_size, 0.22

    def grid(x0, y0, columns, colour_of, label):
        for t in range(T):
            for c in range(columns):
                ax.add_patch(plt.Rectangle((x0 + c * cell, y0 + (T - 1 - t) * cell), cell, cell,
                                           facecolor=colour_of(c), edgecolor="white", linewidth=0.8))
        ax.text(x0 + columns * cell / 2, y0 - 0.12, label, ha="center", va="top", fontsize=7.5)
        return x0 + columns * cell

    def head_colour(c):
        return colours[(c // head_size) % len(colours)]

    height = T * cell
    y_mid = 1.0
    right = grid(0.0, y_mid - height / 2, C, head_colour, "x, one sequence\n(T, C)")
    gap = 0.16
    stack_x = right + 2.0
    pieces_top = y_mid + (n_heads * (height + gap) - gap) / 2
    for h in range(n_heads):
        y0 = pieces_top - (h + 1) * height - h * gap
        grid(stack_x, y0, head_size, lambda c, h=h: colours[h % len(colours)], "")
        ax.text(stack_x - 0.08, y0 + height / 2, f"head {h}", ha="right", va="center", fontsize=7)
    stack_right = stack_x + head_size * cell
    ax.text((stack_x + stack_right) / 2, pieces_top - n_heads * (height + gap) + gap - 0.12,
            "(n_heads, T, head_size)", ha="center", va="top", fontsize=7.5)
    _arrow(ax, (right + 0.08, y_mid), (stack_x - 0.7, y_mid))
    ax.text((right + stack_x - 0.7) / 2, y_mid + 0.1, "view +\ntranspose", ha="center", va="bottom",
            fontsize=7)
    attend_x = stack_right + 1.8
    for h in range(n_heads):
        y0 = pieces_top - (h + 1) * height - h * gap
        grid(attend_x, y0, head_size, lambda c, h=h: colours[h % len(colours)], "")
    _arrow(ax, (stack_right + 0.08, y_mid), (attend_x - 0.08, y_mid))
    ax.text((stack_right + attend_x) / 2, y_mid + 0.1, "attention,\neach head\nalone", ha="center",
            va="bottom", fontsize=7)
    concat_x = attend_x + head_size * cell + 1.7
    concat_right = grid(concat_x, y_mid - height / 2, C, head_colour, "heads side by side\n(T, C)")
    _arrow(ax, (attend_x + head_size * cell + 0.08, y_mid), (concat_x - 0.08, y_mid))
    ax.text((attend_x + head_size * cell + concat_x) / 2, y_mid + 0.1, "transpose +\nreshape\n(concat)",
            ha="center", va="bottom", fontsize=7)
    out_x = concat_right + 1.5
    grid(out_x, y_mid - height / 2, C, lambda c: "#999999", "out_proj (W_O)\nmixes heads: (T, C)")
    _arrow(ax, (concat_right + 0.08, y_mid), (out_x - 0.08, y_mid))
    ax.set_xlim(-0.2, out_x + C * cell + 0.2)
    ax.set_ylim(pieces_top - n_heads * (height + gap) - 0.45, pieces_top + 0.15)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"Multi-head attention: C = {C} channels as {n_heads} heads of head_size = {head_size}")
    return ax
