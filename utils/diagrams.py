"""Block diagrams of the two Transformers the book builds, drawn with matplotlib (chapter 00).

Each box names the chapter that builds it, and the arrows carry the shape of
the tensor that flows along them, in the book's notation (B, T, C, V).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

# Colours by kind of layer, reused in the legend.
COLOURS = {
    "input": "#eeeeee",
    "embedding": "#fde2c8",
    "attention": "#f9c6c9",
    "norm": "#fff3b0",
    "feed-forward": "#c8e6fd",
    "output": "#d4f0d0",
}

BOX_W, BOX_H, GAP = 3.1, 0.42, 0.22


def _box(ax, x, y, text, kind, chapter=None):
    patch = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=COLOURS[kind], edgecolor="#444444", linewidth=1)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5)
    if chapter is not None:
        ax.text(x + BOX_W / 2 + 0.08, y, f"ch {chapter:02d}", ha="left", va="center", fontsize=7, color="#666666")


def _arrow(ax, start, end, label=None, colour="#444444", curve=0.0):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.1, shrinkA=0, shrinkB=0,
                                connectionstyle=f"arc3,rad={curve}"))
    if label:
        ax.text((start[0] + end[0]) / 2 - 0.1, (start[1] + end[1]) / 2, label, ha="right", va="center",
                fontsize=7, color="#555555", family="monospace")


def _column(ax, x, y0, stages, block, n_label, tensor_shape):
    """Inputs and embeddings, a framed N× block, then whatever sits on top. Returns every box's y by name."""
    where = {}
    y = y0
    previous = None
    for name, (text, kind, chapter) in stages["below"]:
        if previous is not None:
            _arrow(ax, (x, previous + BOX_H / 2), (x, y - BOX_H / 2), label=stages["shapes"].get(name))
        _box(ax, x, y, text, kind, chapter)
        where[name] = y
        previous, y = y, y + BOX_H + GAP
    block_bottom = y - GAP / 2
    for i, (name, (text, kind, chapter)) in enumerate(block):
        _arrow(ax, (x, previous + BOX_H / 2), (x, y - BOX_H / 2), label=tensor_shape if i == 0 else None)
        _box(ax, x, y, text, kind, chapter)
        where[name] = y
        previous, y = y, y + BOX_H + GAP
    block_top = previous + BOX_H / 2 + GAP / 2
    frame = FancyBboxPatch((x - BOX_W / 2 - 0.18, block_bottom), BOX_W + 0.36, block_top - block_bottom,
                           boxstyle="round,pad=0.02,rounding_size=0.12", facecolor="none",
                           edgecolor="#888888", linestyle="--", linewidth=1)
    ax.add_patch(frame)
    ax.text(x - BOX_W / 2 - 0.26, block_bottom + 0.1, n_label, ha="right", va="bottom", fontsize=9, weight="bold")
    for name, (text, kind, chapter) in stages["above"]:
        _arrow(ax, (x, previous + BOX_H / 2), (x, y - BOX_H / 2), label=stages["shapes"].get(name))
        _box(ax, x, y, text, kind, chapter)
        where[name] = y
        previous, y = y, y + BOX_H + GAP
    return where


def _decoder_stages(cross_attention: bool, tokens_label: str):
    below = [
        ("tokens", (tokens_label, "input", None)),
        ("embed", ("token embedding", "embedding", 2)),
        ("position", ("+ positional encoding", "embedding", 3)),
    ]
    block = [("self", ("masked multi-head self-attention", "attention", 5)), ("norm1", ("add & norm", "norm", 7))]
    if cross_attention:
        block += [("cross", ("cross-attention (K, V from encoder)", "attention", 6)), ("norm2", ("add & norm", "norm", 7))]
    block += [("ffn", ("feed-forward (ReLU)", "feed-forward", 7)), ("norm3", ("add & norm", "norm", 7))]
    above = [
        ("linear", ("linear C → V", "output", 10)),
        ("softmax", ("softmax over the vocabulary", "output", 10)),
        ("probs", ("next-token probabilities", "input", None)),
    ]
    T = "T_dec" if cross_attention else "T"
    shapes = {"embed": f"(B, {T})", "position": f"(B, {T}, C)", "linear": f"(B, {T}, C)", "softmax": f"(B, {T}, V)",
              "probs": f"(B, {T}, V)"}
    return {"below": below, "above": above, "shapes": shapes}, block


def draw_transformer(kind: str = "encoder-decoder", ax=None):
    """The encoder–decoder Transformer (Vaswani et al., 2017) or the decoder-only model (GPT)."""
    if kind not in ("encoder-decoder", "decoder-only"):
        raise ValueError(f"kind must be 'encoder-decoder' or 'decoder-only', not {kind!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(9.0 if kind == "encoder-decoder" else 4.6, 7.6 if kind == "encoder-decoder" else 6.4))
    if kind == "encoder-decoder":
        encoder_stages = {
            "below": [
                ("tokens", ("source tokens", "input", 1)),
                ("embed", ("token embedding", "embedding", 2)),
                ("position", ("+ positional encoding", "embedding", 3)),
            ],
            "above": [],
            "shapes": {"embed": "(B, T_enc)", "position": "(B, T_enc, C)"},
        }
        encoder_block = [
            ("self", ("multi-head self-attention", "attention", 4)),
            ("norm1", ("add & norm", "norm", 7)),
            ("ffn", ("feed-forward (ReLU)", "feed-forward", 7)),
            ("norm2", ("add & norm", "norm", 7)),
        ]
        enc = _column(ax, 2.0, 0.3, encoder_stages, encoder_block, "N×", "(B, T_enc, C)")
        stages, block = _decoder_stages(True, "target shifted right behind <SOS>")
        dec = _column(ax, 7.2, 0.3 + 2 * (BOX_H + GAP), stages, block, "N×", "(B, T_dec, C)")
        # The encoder's output feeds every decoder block's cross-attention as keys and values.
        top = enc["norm2"] + BOX_H / 2
        ax.plot([2.0, 2.0], [top, dec["cross"]], color="#b03a48", lw=1.1)
        _arrow(ax, (2.0, dec["cross"]), (7.2 - BOX_W / 2, dec["cross"]), colour="#b03a48")
        ax.text(1.9, dec["cross"] - 0.05, "encoder output\n(B, T_enc, C)", fontsize=7, color="#b03a48",
                ha="right", va="top", family="monospace")
        ax.text(4.35, dec["cross"] + 0.08, "K, V", fontsize=7.5, color="#b03a48", ha="center", va="bottom")
        ax.text(2.0, 0.3 - BOX_H / 2 - 0.3, "ENCODER", ha="center", va="top", fontsize=10, weight="bold")
        ax.text(7.2, 0.3 - BOX_H / 2 - 0.3, "DECODER", ha="center", va="top", fontsize=10, weight="bold")
        ax.set_xlim(-0.6, 9.4)
        ax.set_ylim(-0.6, dec["probs"] + 0.4)
        ax.set_title("The encoder–decoder Transformer")
    else:
        stages, block = _decoder_stages(False, "tokens so far")
        dec = _column(ax, 2.0, 0.3, stages, block, "N×", "(B, T, C)")
        ax.text(2.0, 0.3 - BOX_H / 2 - 0.3, "DECODER-ONLY (GPT)", ha="center", va="top", fontsize=10, weight="bold")
        ax.set_xlim(-0.6, 4.6)
        ax.set_ylim(-0.6, dec["probs"] + 0.4)
        ax.set_title("The decoder-only language model")
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
