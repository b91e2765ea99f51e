"""One-off: give every plot cell MyST-NB figure metadata (numbered caption, name, alt text).

``mystnb.figure.caption`` / ``.name`` make the output a numbered, referenceable figure; ``mystnb.image.alt`` is
the image's alt text. Only metadata changes: outputs stay as committed. Paths are the repository's (any
working directory); every chapter and cell is found before any is written."""
import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]

META = {
    ("abstract", "abstract-03"): (
        "Zero-shot transfer in one picture: each task is written as text and answered by continuing the text.",
        "Schematic: three prompts on the left (a translation written as 'I like cheese = J'aime le fromage' "
        "followed by 'The cat sleeps =', a question 'Q: Who wrote Hamlet?' followed by 'A:', and a news "
        "article followed by 'TL;DR:') feed one language model in the middle, and its continuations on the "
        "right are the answers."),
    ("abstract", "abstract-06"): (
        "Table 3 of the paper, plotted: GPT-2's zero-shot score on each data set against model size (log scale), "
        "with the previous state of the art as a dashed line. Numbers from the paper.",
        "Small-multiple line charts, one per Table 3 data set, of GPT-2's zero-shot score for the four model sizes "
        "on a logarithmic parameter axis, each with a horizontal dashed line at the previous state of the art."),
    ("approach", "approach-07"): (
        "Per-byte surprise (−log₂ p, bits) of a Shakespeare line under the tiny model: the first letters of "
        "words cost the most.",
        "Bar chart with one bar per byte of a line of Shakespeare, the bar height being the bits of surprise of "
        "that byte given the bytes before it; bars are tall at the start of words and short inside common words."),
    ("approach", "approach-11"): (
        "The tiny model's next-byte distribution after a prompt, under temperature, top-k and top-p: temperature "
        "reshapes it, top-k and top-p cut its tail.",
        "A row of bar charts of the probabilities of the 20 most likely next bytes, one chart per decoding "
        "setting; lower temperature sharpens the bars, higher flattens them, and top-k and top-p set the tail "
        "bars to zero."),
    ("cbt_lambada_winograd", "cbt_lambada_winograd-15"): (
        "Winograd Schema Challenge accuracy of the chapter's model (partial and full scoring) beside GPT-2 "
        "1542M and the previous state of the art as the paper reports them; the dashed line is chance (50%).",
        "Bar chart of accuracy on WSC273 in percent with four bars: the chapter's model with partial and with "
        "full scoring, GPT-2 1542M from the paper, and the previous state of the art from the paper, with a "
        "dashed horizontal line at the 50% chance level."),
    ("discussion", "discussion-03"): (
        "The claims ledger by paper section: how many of the paper's claims the book reproduces, shows, cites, "
        "or has pending.",
        "Stacked bar chart with one bar per section of the paper, each split into the claims that are "
        "reproduced, shown, cited or pending in the claims ledger."),
    ("input_representation", "input_representation-12"): (
        "BPE compression on tiny-shakespeare: bytes per token against vocabulary size; each doubling helps, "
        "with diminishing returns.",
        "Line chart of bytes per token, rising with vocabulary size on a logarithmic axis and flattening as the "
        "vocabulary grows."),
    ("introduction", "introduction-08"): (
        "Per-byte perplexity of the Shakespeare-trained tiny model on held-out Shakespeare and on WebText: "
        "worse on text from another distribution.",
        "Bar chart with two bars of perplexity per byte: held-out Shakespeare (the same distribution as the "
        "training text) and WebText (a different distribution), the WebText bar being the taller."),
    ("language_modeling", "language_modeling-08"): (
        "Sliding-window evaluation on the first 60 lines of WikiText-2: the cost (forward passes) and the mean "
        "NLL per token for each stride.",
        "Line chart of mean negative log-likelihood in nats per token against the number of forward passes, one "
        "labelled point per stride."),
    ("memorization", "memorization-07"): (
        "Bloom filters over the WebText sample: the measured false-positive rate follows the design rate over "
        "three orders of magnitude.",
        "Log-log chart of measured against target false-positive rate with the diagonal as reference; the "
        "measured points lie on the diagonal."),
    ("memorization", "memorization-10"): (
        "Table 6 of the paper, plotted: the share of each test set's 8-grams found in its own training split "
        "and in WebText's training set.",
        "Grouped bar chart with one pair of bars per test set: percent of 8-grams also in the test set's own "
        "training split and percent also in WebText train."),
    ("model", "model-17"): (
        "Pre-LN against post-LN on a deep narrow model: the gradient norm each block receives at initialization "
        "(left) and the training loss over 50 steps (right).",
        "Two charts. Left: gradient norm per block, nearly flat for pre-LN and much smaller for every post-LN "
        "block but the first, on a logarithmic axis. Right: training loss curves of both variants over 50 "
        "optimizer steps, with post-LN above pre-LN at the end."),
    ("model", "model-23"): (
        "The residual stream's standard deviation after each of 48 blocks at initialization, with and without "
        "the 1/√N scaling of the residual projections.",
        "Line chart of the residual stream's standard deviation against depth: the unscaled curve grows steadily "
        "with depth, the scaled one stays almost flat."),
    ("model", "model-27"): (
        "Attention maps of the deep pre-LN model after 50 steps (mean over heads) for three of its layers: "
        "causal, and still spread evenly over the past.",
        "Heat maps of attention probability with query position on the vertical axis and key position on the "
        "horizontal axis; everything above the diagonal is zero and each row is nearly uniform."),
    ("reading_summarization", "reading_summarizatio-12"): (
        "Table 4 of the paper, plotted: ROUGE average on CNN/Daily Mail for Lead-3, Random-3 and GPT-2 with and "
        "without the TL;DR: hint, the paper's numbers beside ours.",
        "Horizontal grouped bar chart of the ROUGE average (mean of ROUGE-1, ROUGE-2 and ROUGE-L F1) for four "
        "systems, Lead-3, Random-3, GPT-2 with TL;DR: and GPT-2 without the hint, with a grey bar for the "
        "paper's number and a blue bar for ours."),
    ("training", "training-05"): (
        "The learning-rate schedule of TrainConfig at the paper's scale: linear warm-up, then cosine decay to "
        "10% of the peak.",
        "Line chart of the learning rate against optimizer step: a short linear rise to the peak followed by a "
        "long cosine decay."),
    ("training", "training-08"): (
        "Training and validation loss of the tiny CPU run on tiny-shakespeare: they fall together, so the model "
        "underfits.",
        "Line chart of cross-entropy in nats per byte against training step, with a training curve and "
        "validation points that fall together with no gap between them."),
    ("translation_qa", "translation_qa-09"): (
        "WMT-14 BLEU in both directions: GPT-2 1542M as the paper reports it beside the book's model "
        "(a bar at 0 means no usable translation).",
        "Grouped bar chart of corpus BLEU for English to French and French to English, with one bar for the "
        "paper's GPT-2 1542M and one for the model run in this chapter."),
    ("webtext", "webtext-07"): (
        "Karma of the Reddit links in the two monthly dumps (log-log): heavy-tailed, with the thresholds marked "
        "as dashed lines.",
        "Log-log histogram of the number of links per karma value, falling steadily with karma, with vertical "
        "dashed lines at karma thresholds."),
    ("webtext", "webtext-13"): (
        "The most linked domains in our 2005-2006 links, with each one's rank among WebText's top 1,000 domains.",
        "Horizontal bar chart of link counts for the most frequent domains of our sample, each labelled with its "
        "rank in WebText's published top-1000 domain list where it appears there."),
    ("webtext", "webtext-16"): (
        "Dragnet against Newspaper, F1 on each of the 181 benchmark pages: the two extractors fail on different "
        "pages.",
        "Scatter plot with one point per page, Dragnet F1 on the horizontal axis and Newspaper F1 on the "
        "vertical axis; most points are near the top right and the failures lie near the axes, not at the "
        "origin."),
    ("webtext", "webtext-22"): (
        "Near-duplicate detection with MinHash LSH on planted copies: recall against the share of words changed, "
        "for two Jaccard thresholds.",
        "Line chart of the recall of planted near-duplicate pairs against the percentage of words changed in "
        "the copy, one line per Jaccard threshold, with the expected Jaccard similarity of a copy for reference."),
}


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)  # no options: --help explains, anything else is an error (and nothing is written)
    chapters = sorted({c for c, _ in META})
    books = {}
    for chapter in chapters:
        path = root / "book" / f"{chapter}.ipynb"
        try:
            books[path] = nbformat.read(path, as_version=4)
        except (OSError, ValueError, TypeError, AttributeError) as e:  # missing, or not a notebook
            parser.error(f"{path}: {' '.join(str(e).split())[:200]}")
    found = {(path.stem, cell.get("id")) for path, nb in books.items() for cell in nb.cells}
    missing = sorted(set(META) - found)
    if missing:
        parser.error(f"cells not found (renamed or removed?): {', '.join(f'{c}/{i}' for c, i in missing)}; "
                     f"nothing was written")
    for path, nb in books.items():
        chapter = path.stem
        for cell in nb.cells:
            key = (chapter, cell.get("id"))
            if key in META:
                caption, alt = META[key]
                mystnb = cell.metadata.setdefault("mystnb", {})
                mystnb["image"] = {"alt": alt}
                # MyST-NB wraps *every* display output of the cell in the figure: a cell that also displays
                # something else (training-05 shows the source of lr_at) gets alt text only, no caption
                displays = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
                if len(displays) == 1:
                    mystnb["figure"] = {"caption": caption, "name": "fig-" + cell["id"]}
                else:
                    mystnb.pop("figure", None)
        nbformat.write(nb, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
