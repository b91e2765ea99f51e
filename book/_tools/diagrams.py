"""The book's diagrams: pictures of the ideas the chapters teach, drawn by code and written as SVG.

``python book/_tools/diagrams.py`` (re)writes every diagram into ``book/figures/``; ``--check`` only compares
(exit 1 when a file differs or is missing). The output is byte-identical from run to run: fixed ``svg.hashsalt``,
no date or creator metadata, text kept as ``<text>`` (``svg.fonttype: none``), so ``tests/test_figures.py`` can
regenerate every diagram and compare it with the committed file. Chapters show them with MyST figure directives
in their markdown cells. Every diagram is drawn :data:`~gpt2lib.plotting.COLUMN_INCHES` wide or less, with no
text under :data:`~gpt2lib.plotting.MIN_FONT_PT`, so it is shown at about its drawn size in the book's column.

The numbers in the diagrams are the paper's (§2.1: 45 million links, 8 million documents, 40 GB; §2.3: 512
sequences, 1024 tokens, 50,257 tokens; Table 2: 12 heads of 64 for GPT-2 small) or stated as an example.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from gpt2lib.plotting import COLUMN_INCHES, MIN_FONT_PT, rc_params  # noqa: E402

FIGURES = ROOT / "book" / "figures"

# One palette for all diagrams (colour-blind safe, Okabe-Ito), each colour with one meaning.
STREAM = "#0072B2"    # the residual stream / data flowing through
NORM = "#E69F00"      # LayerNorm
ATTN = "#009E73"      # attention
MLP = "#CC79A7"       # MLP / computation
OUTPUT = "#D55E00"    # what is scored or generated
GREY = "#595959"
LIGHT = "#F2F2F2"
FS = 11               # body text of the diagrams (pt)
SMALL = MIN_FONT_PT   # the smallest text

DIAGRAMS: dict[str, callable] = {}


def diagram(name: str):
    def register(fn):
        DIAGRAMS[name] = fn
        return fn
    return register


# ----- drawing helpers ------------------------------------------------------------------------------------------

def canvas(width: float, height: float, xmax: float, ymax: float):
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    ax.set_axis_off()
    return fig, ax


def box(ax, x, y, w, h, text="", color=GREY, fill=None, fs=FS, weight="normal", family="sans-serif",
        alpha=0.18, ha="center", lw=1.4, radius=0.08, textcolor="black"):
    """A rounded box with its lower-left corner at (x, y) and centered text."""
    face = fill if fill is not None else matplotlib.colors.to_rgba(color, alpha)
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}", fc=face, ec=color,
                                lw=lw))
    if text:
        tx = x + w / 2 if ha == "center" else x + 0.12
        ax.text(tx, y + h / 2, text, ha=ha, va="center", fontsize=fs, weight=weight, family=family,
                color=textcolor, linespacing=1.3)


def arrow(ax, start, end, color=GREY, lw=1.5, style="-|>", ls="-", rad=0.0, ms=12):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=ms, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0))


def plus(ax, x, y, r=0.22, color=STREAM):
    ax.add_patch(Circle((x, y), r, fc="white", ec=color, lw=1.6, zorder=3))
    ax.text(x, y - 0.01, "+", ha="center", va="center", fontsize=FS + 2, color=color, zorder=4, weight="bold")


def label(ax, x, y, text, fs=FS, color="black", ha="center", va="center", **kw):
    ax.text(x, y, text, fontsize=fs, color=color, ha=ha, va=va, linespacing=1.3, **kw)


# ----- §2.3 the model -------------------------------------------------------------------------------------------

@diagram("gpt2_block")
def gpt2_block():
    """GPT-2 (§2.3): embeddings, N pre-LN blocks reading from and adding to the residual stream, ln_f, lm_head."""
    fig, ax = canvas(7.0, 8.2, 10, 11.7)
    sx = 2.6  # the residual stream's x
    # inputs
    box(ax, 0.3, 0.3, 4.6, 0.7, "token ids  [B, T]  (0 … 50,256)", GREY)
    box(ax, 0.3, 1.45, 2.15, 0.75, "wte: token\nembedding", STREAM)
    box(ax, 2.75, 1.45, 2.15, 0.75, "wpe: position\nembedding", STREAM)
    arrow(ax, (1.4, 1.0), (1.4, 1.45))
    arrow(ax, (3.8, 1.0), (3.8, 1.45))
    plus(ax, sx, 2.75)
    arrow(ax, (1.4, 2.2), (sx - 0.2, 2.62))
    arrow(ax, (3.8, 2.2), (sx + 0.2, 2.62))
    # the block
    ax.add_patch(Rectangle((0.9, 3.25), 8.8, 5.1, fc=LIGHT, ec=GREY, lw=1.2, ls="--"))
    label(ax, 9.55, 8.05, "block × N\n(N = 12 … 48)", fs=FS, ha="right", va="top", color=GREY)
    ax.add_patch(FancyArrowPatch((sx, 2.97), (sx, 9.05), arrowstyle="-|>", mutation_scale=16, color=STREAM, lw=4,
                                 shrinkA=0, shrinkB=0, zorder=1))
    label(ax, sx - 0.3, 4.0, "residual\nstream x\n[B, T, d]", fs=FS, color=STREAM, ha="right", weight="bold")
    for y0, name, color, sub in ((3.6, "masked multi-head\nself-attention", ATTN, "ln_1"),
                                 (5.95, "MLP: d → 4d → d\n(GELU)", MLP, "ln_2")):
        arrow(ax, (sx, y0 + 0.3), (4.1, y0 + 0.3), color=STREAM, rad=0.0)
        box(ax, 4.1, y0, 1.3, 0.6, f"LN ({sub})", NORM, fs=SMALL)
        arrow(ax, (5.4, y0 + 0.3), (5.8, y0 + 0.3))
        box(ax, 5.8, y0 - 0.15, 3.0, 0.9, name, color)
        arrow(ax, (7.3, y0 + 0.75), (7.3, y0 + 1.55))
        arrow(ax, (7.3, y0 + 1.55), (sx + 0.22, y0 + 1.55))
        plus(ax, sx, y0 + 1.55)
    label(ax, 7.45, 4.75, "reads LN(x), adds\nits result to x", fs=SMALL, ha="left", color=GREY)
    # top
    box(ax, 1.55, 9.05, 2.1, 0.6, "LN (ln_f)", NORM)
    arrow(ax, (sx, 9.65), (sx, 10.0))
    box(ax, 0.6, 10.0, 4.0, 0.7, "lm_head (weights tied to wte)", OUTPUT)
    arrow(ax, (sx, 10.7), (sx, 11.0))
    label(ax, sx, 11.3, "logits [B, T, 50,257] → p(next token)", fs=FS)
    label(ax, 5.6, 1.8, "x = wte[ids] + wpe[0 … T−1]", fs=SMALL, ha="left", color=GREY)
    label(ax, 5.4, 9.35, "x ← x + Attn(LN₁(x))\nx ← x + MLP(LN₂(x))", fs=FS, ha="left", color=STREAM)
    return fig


@diagram("pre_post_ln")
def pre_post_ln():
    """Post-LN (Transformer, GPT-1) against pre-LN (GPT-2, §2.3): where the LayerNorm sits on the residual path."""
    fig, ax = canvas(7.2, 4.9, 10, 6.8)
    for x0, title, pre in ((0.2, "post-LN (Transformer, GPT-1)", False), (5.2, "pre-LN (GPT-2)", True)):
        sx = x0 + 1.2
        label(ax, x0 + 2.3, 6.45, title, fs=FS + 1, weight="bold")
        arrow(ax, (sx, 0.3), (sx, 6.0), color=STREAM, lw=3.5, ms=14)
        label(ax, sx, 0.1, "x (input)", fs=SMALL, color=STREAM)
        if pre:
            arrow(ax, (sx, 1.3), (x0 + 2.4, 1.3), color=STREAM)
            box(ax, x0 + 2.4, 1.0, 1.0, 0.6, "LN", NORM)
            arrow(ax, (x0 + 3.4, 1.3), (x0 + 3.4, 1.9))
            box(ax, x0 + 2.35, 1.9, 2.1, 0.8, "sub-block\n(Attn or MLP)", ATTN, fs=SMALL)
            arrow(ax, (x0 + 3.4, 2.7), (x0 + 3.4, 3.3))
            arrow(ax, (x0 + 3.4, 3.3), (sx + 0.22, 3.3))
            plus(ax, sx, 3.3)
            label(ax, x0 + 2.0, 4.6, "identity path: the\nstream is a plain sum;\nthe gradient reaches\nevery block unscaled",
                  fs=SMALL, ha="left", color=STREAM)
        else:
            arrow(ax, (sx, 1.3), (x0 + 2.4, 1.3), color=STREAM)
            box(ax, x0 + 2.35, 1.1, 2.1, 0.8, "sub-block\n(Attn or MLP)", ATTN, fs=SMALL)
            arrow(ax, (x0 + 3.4, 1.9), (x0 + 3.4, 2.6))
            arrow(ax, (x0 + 3.4, 2.6), (sx + 0.22, 2.6))
            plus(ax, sx, 2.6)
            box(ax, sx - 0.5, 3.2, 1.0, 0.6, "LN", NORM)
            label(ax, x0 + 1.75, 4.6, "the stream itself is\nrenormalized after\nevery sub-block: the\n"
                  "gradient passes\nthrough every LN", fs=SMALL, ha="left", color=NORM)
    ax.plot([5.0, 5.0], [0.2, 6.6], color=GREY, lw=0.8, ls=":")
    return fig


@diagram("causal_attention")
def causal_attention():
    """The causal mask (row i attends to positions 0..i) and the split of d_model into heads (GPT-2 small)."""
    fig, ax = canvas(7.4, 4.6, 10.6, 6.6)
    tokens = ["The", " cat", " sat", " on", " the", " mat"]
    n, c, x0, y0 = len(tokens), 0.62, 1.25, 0.55
    for i in range(n):          # row i = the query position
        for j in range(n):      # column j = the key position
            allowed = j <= i
            ax.add_patch(Rectangle((x0 + j * c, y0 + (n - 1 - i) * c), c, c, ec="white", lw=1.2,
                                   fc=matplotlib.colors.to_rgba(ATTN, 0.25 + 0.6 * (j == i)) if allowed else LIGHT))
            if not allowed:
                label(ax, x0 + (j + 0.5) * c, y0 + (n - 0.5 - i) * c, "−∞", fs=SMALL, color=GREY)
        label(ax, x0 - 0.08, y0 + (n - 0.5 - i) * c, repr(tokens[i])[1:-1].replace(" ", "·"), fs=SMALL, ha="right")
        label(ax, x0 + (i + 0.5) * c, y0 + n * c + 0.1, tokens[i].replace(" ", "·"), fs=SMALL, rotation=60,
              ha="left", va="bottom", rotation_mode="anchor")
    label(ax, x0 + n * c / 2, 6.35, "causal mask: query i sees keys 0 … i", fs=FS, weight="bold")
    label(ax, 0.2, y0 + n * c / 2, "query", fs=SMALL, rotation=90, color=GREY)
    label(ax, x0 + n * c / 2, 0.2, "scores QKᵀ/√d_head; −∞ → probability 0", fs=SMALL, color=GREY)
    # heads
    hx = 5.6
    label(ax, hx + 2.45, 6.35, "multi-head: d = n_head × d_head", fs=FS, weight="bold")
    box(ax, hx, 5.25, 4.9, 0.55, "ln_1(x) [T, 768] → c_attn → q, k, v [T, 768]", STREAM, fs=SMALL)
    for h, (yy, name) in enumerate(((4.15, "head 1"), (3.35, "head 2"), (2.3, "head 12"))):
        box(ax, hx + 0.2, yy, 4.5, 0.62, f"{name}: its 64 columns of q, k, v\nmasked softmax(q kᵀ/√64) v → [T, 64]",
            ATTN, fs=SMALL)
    label(ax, hx + 2.45, 3.02, "⋮", fs=FS + 2)
    arrow(ax, (hx + 2.45, 5.25), (hx + 2.45, 4.77))
    box(ax, hx, 1.2, 4.9, 0.7, "concatenate 12 × 64 → [T, 768]\n→ c_proj → added to the stream", MLP, fs=SMALL)
    arrow(ax, (hx + 2.45, 2.3), (hx + 2.45, 1.9))
    label(ax, hx + 2.45, 0.55, "each head has its own pattern;\nall heads run in one batched matmul", fs=SMALL,
          color=GREY)
    return fig


@diagram("kv_cache")
def kv_cache():
    """Generation with a KV cache: the prompt is run once, then each step runs only the newest token."""
    fig, ax = canvas(7.4, 4.3, 10.6, 6.2)
    c = 0.55
    rows = [("prefill", 4, 4, "one pass over the 4 prompt tokens:\nk, v of every layer go into the cache"),
            ("step 1", 5, 1, "1 new token: its q attends to\n5 cached k, v; its k, v appended"),
            ("step 2", 6, 1, "1 new token, 6 cached positions"),
            ("step 3", 7, 1, "1 new token, 7 cached positions")]
    label(ax, 1.5 + 3.5 * c, 5.9, "key/value cache (per layer)", fs=FS, weight="bold")
    label(ax, 7.6, 5.9, "work this step", fs=FS, weight="bold")
    for r, (name, total, new, note) in enumerate(rows):
        y = 4.8 - r * 1.25
        label(ax, 1.3, y + c / 2, name, fs=FS, ha="right")
        for j in range(total):
            fresh = j >= total - new
            ax.add_patch(Rectangle((1.5 + j * c, y), c, c, ec="white", lw=1.2,
                                   fc=matplotlib.colors.to_rgba(OUTPUT if fresh else STREAM, 0.75 if fresh else 0.3)))
            label(ax, 1.5 + (j + 0.5) * c, y + c / 2, str(j), fs=SMALL, color="white" if fresh else "black")
        label(ax, 5.8, y + c / 2, note, fs=SMALL, ha="left")
    ax.add_patch(Rectangle((1.5, 0.25), c, 0.35, fc=matplotlib.colors.to_rgba(STREAM, 0.3), ec="none"))
    label(ax, 1.5 + c + 0.1, 0.42, "read from the cache", fs=SMALL, ha="left")
    ax.add_patch(Rectangle((4.6, 0.25), c, 0.35, fc=matplotlib.colors.to_rgba(OUTPUT, 0.75), ec="none"))
    label(ax, 4.6 + c + 0.1, 0.42, "computed this step (q, k, v)", fs=SMALL, ha="left")
    return fig


# ----- §2.2 byte-level BPE --------------------------------------------------------------------------------------

@diagram("bpe_merges")
def bpe_merges():
    """Byte-level BPE (§2.2): text → pre-tokens → UTF-8 bytes → merges applied in rank order. Example merges."""
    fig, ax = canvas(7.4, 5.0, 10.6, 7.2)
    steps = [
        ("text", [" the café"], GREY),
        ("pre-tokens", [" the", " café"], GREY),
        ("UTF-8 bytes", ["Ġ", "t", "h", "e", "|", "Ġ", "c", "a", "f", "Ã", "©"], STREAM),
        ("merge Ġ t", ["Ġt", "h", "e", "|", "Ġ", "c", "a", "f", "Ã", "©"], ATTN),
        ("merge h e", ["Ġt", "he", "|", "Ġ", "c", "a", "f", "Ã", "©"], ATTN),
        ("merge Ġt he", ["Ġthe", "|", "Ġ", "c", "a", "f", "Ã", "©"], ATTN),
        ("merge Ã ©", ["Ġthe", "|", "Ġ", "c", "a", "f", "Ã©"], ATTN),
    ]
    for r, (name, pieces, color) in enumerate(steps):
        y = 6.4 - r * 0.9
        label(ax, 2.0, y + 0.3, name, fs=FS, ha="right", family="sans-serif")
        x = 2.3
        for p in pieces:
            if p == "|":
                x += 0.35
                continue
            w = 0.22 + 0.2 * len(p)
            box(ax, x, y, w, 0.6, p, color, fs=FS, family="monospace", radius=0.05)
            x += w + 0.06
    label(ax, 7.55, 4.9, "Ġ: the space byte\n"
          "é: two bytes, C3 A9,\nshown as Ã and ©\n(GPT-2's byte-to-\nunicode map)", fs=SMALL, ha="left",
          color=GREY)
    label(ax, 7.55, 2.0, "merges never cross\nthe gap between\npre-tokens; the merge\n"
          "learned first is\napplied first", fs=SMALL, ha="left", color=GREY)
    return fig


# ----- §2.1 WebText ---------------------------------------------------------------------------------------------

@diagram("webtext_pipeline")
def webtext_pipeline():
    """The WebText pipeline (§2.1) as the webtext chapter runs it, stage by stage."""
    fig, ax = canvas(7.4, 4.9, 10.6, 7.0)
    stages = [
        ("Reddit submissions\n(outbound links)", GREY, "monthly link dumps"),
        ("Stage 1: links\nkarma ≥ 3, normalise +\nde-duplicate URLs, drop\nWikipedia and non-HTML", STREAM,
         "45 million links (paper)"),
        ("fetch the pages\n(not done in the book:\nstored HTML stands in)", GREY, ""),
        ("Stage 2: HTML → text\n(Dragnet + Newspaper;\nhere trafilatura and a\nteaching extractor)", ATTN, ""),
        ("Stage 3: heuristic\ncleaning (boilerplate,\nlength, alphabetic,\nEnglish-like)", NORM, ""),
        ("Stage 4: de-duplication\nexact hash + MinHash\nnear-duplicates", MLP, "8 million documents,\n40 GB (paper)"),
        ("Stage 5: token shards\n(GPT-2 BPE, uint16)", OUTPUT, "training data"),
    ]
    pos = [(0.2, 4.9), (3.7, 4.9), (7.2, 4.9), (7.2, 2.45), (3.7, 2.45), (0.2, 2.45)]
    w, h = 3.1, 1.55
    for (x, y), (text, color, note) in zip(pos, stages):
        box(ax, x, y, w, h, text, color, fs=SMALL)
        if note and y > 3:
            label(ax, x + w / 2, y + h + 0.3, note, fs=SMALL, color=GREY, style="italic")
    for (x1, y1), (x2, y2) in zip(pos, pos[1:]):
        if y1 == y2:
            a, b = ((x1 + w, y1 + h / 2), (x2, y2 + h / 2)) if x2 > x1 else ((x1, y1 + h / 2), (x2 + w, y2 + h / 2))
        else:
            a, b = (x1 + w / 2, y1), (x2 + w / 2, y2 + h)
        arrow(ax, a, b)
    text, color, note = stages[-1]
    box(ax, 0.2, 0.3, w, 1.2, text, color, fs=SMALL)
    arrow(ax, (0.2 + w / 2, 2.45), (0.2 + w / 2, 1.5))
    label(ax, 3.6, 0.9, "WebText: " + stages[5][2].replace("\n", " ") + ".\nThe book runs the same stages on "
          "7,759 links\nof two monthly dumps and a 1,408-document sample.", fs=SMALL, color=GREY, ha="left",
          style="italic")
    return fig


# ----- training -------------------------------------------------------------------------------------------------

@diagram("training_step")
def training_step():
    """One optimizer step of the paper's batch: micro-batches, gradient accumulation, data parallelism (DDP)."""
    fig, ax = canvas(7.4, 5.2, 10.6, 7.4)
    label(ax, 5.3, 7.15, "one optimizer step = 512 sequences × 1024 tokens = 524,288 tokens", fs=FS, weight="bold")
    label(ax, 5.3, 6.75, "= micro-batch 16 × context 1024 × 4 accumulation steps × 8 GPUs", fs=FS, color=GREY)
    gpus = [(0.3, "GPU 0"), (3.0, "GPU 1"), (7.7, "GPU 7")]
    for x, name in gpus:
        ax.add_patch(Rectangle((x, 1.95), 2.5, 4.5, fc=LIGHT, ec=GREY, lw=1.0))
        label(ax, x + 1.25, 6.1, name + "\n(full model copy)", fs=SMALL, weight="bold")
        for k in range(4):
            y = 4.95 - k * 0.68
            box(ax, x + 0.15, y, 2.2, 0.55, f"micro {k + 1}: fwd + bwd", STREAM, fs=SMALL, radius=0.04)
        box(ax, x + 0.15, 2.1, 2.2, 0.55, "grads add up", MLP, fs=SMALL, radius=0.04)
        arrow(ax, (x + 1.25, 2.91), (x + 1.25, 2.65))
        arrow(ax, (x + 1.25, 2.1), (x + 1.25, 1.55))
    label(ax, 6.6, 4.1, "…", fs=FS + 6)
    box(ax, 0.3, 0.95, 9.9, 0.6, "all-reduce: average the gradients of all 8 GPUs (DDP, once per step)", ATTN,
        fs=SMALL)
    arrow(ax, (5.25, 0.95), (5.25, 0.7))
    box(ax, 1.8, 0.1, 6.9, 0.6, "clip to norm 1.0 → AdamW step, the same update on every GPU", OUTPUT, fs=SMALL)
    return fig


# ----- §3 zero-shot tasks ---------------------------------------------------------------------------------------

def task_rows(rows, height_per_row=1.55, width=7.4):
    """Rows of (task, prompt lines, cue, output, how scored): the text the model reads and what is compared."""
    total = len(rows) * height_per_row + 0.5
    fig, ax = canvas(width, total * 0.75, 10.6, total)
    for r, (task, prompt, cue, output, how) in enumerate(rows):
        y = total - 0.4 - (r + 1) * height_per_row + 0.25
        label(ax, 0.1, y + height_per_row - 0.35, task, fs=FS, weight="bold", ha="left")
        text = "\n".join(prompt)
        nlines = len(prompt)
        bh = max(0.3 * nlines + 0.25, 0.85)
        box(ax, 0.1, y + height_per_row - 0.6 - bh, 6.4, bh, "", STREAM, alpha=0.08)
        ax.text(0.25, y + height_per_row - 0.6 - bh / 2, text, family="monospace", fontsize=SMALL, va="center",
                ha="left", linespacing=1.35)
        if cue:  # the task's cue, in colour, right after the last prompt line (monospace: 0.6 em per character)
            char = 0.6 * SMALL / 72 * 10.6 / width
            label(ax, 0.25 + (len(prompt[-1]) + 1) * char, y + height_per_row - 0.6 - bh / 2 - (nlines - 1) * 0.135 + 0.02,
                  cue, fs=SMALL, family="monospace", color=OUTPUT, ha="left", weight="bold")
        arrow(ax, (6.55, y + height_per_row - 0.6 - bh / 2), (6.95, y + height_per_row - 0.6 - bh / 2))
        box(ax, 7.0, y + height_per_row - 0.6 - bh, 3.5, bh, output, OUTPUT, fs=SMALL, alpha=0.12)
        label(ax, 7.0, y + height_per_row - 0.42, how, fs=SMALL, color=GREY, ha="left", style="italic")
    return fig


@diagram("tasks_choose_word")
def tasks_choose_word():
    """§3.2-3.4: CBT, LAMBADA and Winograd written as text; the candidates are scored by log-probability."""
    return task_rows([
        ("CBT (§3.2): 1 of 10 candidate words", ["…20 sentences of a children's book…",
                                                 "She put the ____ on the table ."],
         "", "fill each candidate in;\nscore it + rest of sentence", "highest log p wins"),
        ("LAMBADA (§3.3): the last word", ["…a passage whose last word needs the",
                                           "whole passage… she handed him the"],
         "", "predict the next word;\ncompare with the target", "accuracy, perplexity"),
        ("Winograd (§3.4): whom a pronoun means", ["The trophy doesn't fit in the suitcase",
                                                  "because the [trophy|suitcase] is too big."],
         "", "replace the pronoun by each\ncandidate; score the rest", "partial scoring"),
    ])


@diagram("tasks_read_summarize")
def tasks_read_summarize():
    """§3.5 CoQA and §3.6 summarization as text: a cue ("A:", "TL;DR:") makes the model answer or summarise."""
    return task_rows([
        ("CoQA (§3.5): answer from a document", ["…the document…",
                                                 "Q: Who fed the cat? A: her neighbour",
                                                 "Q: When?"],
         "A:", "greedy decoding until\nthe end of the answer", "F1 against 4 human answers"),
        ("Summarization (§3.6)", ["…a news article…"], "TL;DR:",
         "100 tokens, top-k k = 2;\nfirst 3 sentences kept", "ROUGE against highlights"),
    ], height_per_row=1.8)


@diagram("tasks_translate_answer")
def tasks_translate_answer():
    """§3.7 translation and §3.8 question answering: demonstrations in the prompt, then greedy decoding."""
    return task_rows([
        ("Translation (§3.7): English → French", ["The house is blue. = La maison est bleue.",
                                                  "I like tea. = J'aime le thé.",
                                                  "Where is the station?"],
         "=", "greedy decoding; the first\ngenerated sentence", "BLEU"),
        ("Question answering (§3.8)", ["Q: Who wrote Hamlet? A: William Shakespeare",
                                       "Q: What is the capital of Peru?"],
         "A:", "greedy decoding;\nthe short answer", "exact match"),
    ], height_per_row=1.8)


@diagram("sliding_window")
def sliding_window():
    """§3.1: a long file is scored with overlapping windows of L tokens moved by a stride; each token once."""
    fig, ax = canvas(7.4, 3.3, 10.6, 4.7)
    n, c, x0 = 16, 0.55, 0.9
    L, stride = 8, 4
    label(ax, 5.3, 4.35, f"window L = {L} tokens, stride = {stride}: every token is scored once,\n"
          f"with at least L − stride = {L - stride} tokens of context (after the first window)", fs=SMALL)
    for j in range(n):
        ax.add_patch(Rectangle((x0 + j * c, 3.4), c, 0.45, fc=LIGHT, ec="white"))
        label(ax, x0 + (j + 0.5) * c, 3.62, str(j), fs=SMALL)
    label(ax, x0 - 0.1, 3.62, "file", fs=SMALL, ha="right")
    for w in range(3):
        start = w * stride
        y = 2.5 - w * 0.85
        scored_from = 0 if w == 0 else start + L - stride
        for j in range(start, start + L):
            scored = j >= scored_from
            ax.add_patch(Rectangle((x0 + j * c, y), c, 0.5, ec="white", lw=1.2,
                                   fc=matplotlib.colors.to_rgba(OUTPUT if scored else STREAM, 0.7 if scored else 0.25)))
        label(ax, x0 - 0.1, y + 0.25, f"window {w + 1}", fs=SMALL, ha="right")
    ax.add_patch(Rectangle((x0, 0.0), c, 0.3, fc=matplotlib.colors.to_rgba(STREAM, 0.25), ec="none"))
    label(ax, x0 + c + 0.1, 0.15, "context only", fs=SMALL, ha="left")
    ax.add_patch(Rectangle((x0 + 3.2, 0.0), c, 0.3, fc=matplotlib.colors.to_rgba(OUTPUT, 0.7), ec="none"))
    label(ax, x0 + 3.3 + c, 0.15, "scored (its NLL is summed)", fs=SMALL, ha="left")
    return fig


# ----- writing and checking -------------------------------------------------------------------------------------

def render(name: str) -> bytes:
    """The SVG bytes of one diagram, drawn with the book's style; identical on every run."""
    with matplotlib.rc_context({**rc_params(), "savefig.bbox": "standard"}):  # exactly figsize: fits the column
        fig = DIAGRAMS[name]()
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    return buf.getvalue()


def write_all(out: Path = FIGURES, check: bool = False) -> list[str]:
    """Write every diagram to ``out/<name>.svg``; with ``check``, write nothing and return the names that differ."""
    out.mkdir(parents=True, exist_ok=True)
    differ = []
    for name in DIAGRAMS:
        data, path = render(name), out / f"{name}.svg"
        if check:
            if not path.is_file() or path.read_bytes() != data:
                differ.append(name)
        else:
            path.write_bytes(data)
    return differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with book/figures/ and write nothing")
    args = parser.parse_args(argv)
    differ = write_all(check=args.check)
    for name in differ:
        print(f"book/figures/{name}.svg is out of date; run python book/_tools/diagrams.py")
    assert COLUMN_INCHES  # the width every diagram is drawn within
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
