"""One-off: insert the diagram cells (markdown, MyST figure directives) into the chapters, after given cells.

Idempotent: a cell whose id already exists is replaced, not duplicated. Paths are the repository's (any working
directory); every chapter and anchor cell is found before any is written."""
import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]

FIG = """```{{figure}} figures/{file}.svg
:alt: {alt}
:name: fig-{name}
:width: {width}

{caption}
```"""

CELLS = {
    # chapter: [(after cell id, new cell id, lead-in, file, alt, caption, width)]
    "model": [
        ("model-04", "fig-gpt2-block-cell",
         "{numref}`fig-gpt2-block` shows the whole model before we take it apart: the residual stream runs from the "
         "embeddings to the output, and each block's two sub-blocks read a normalized copy of it and add their "
         "result back.",
         "gpt2_block",
         "Diagram of GPT-2. Token ids go through the token embedding wte and the position embedding wpe, which are "
         "added to form the residual stream x. In each of N blocks, x goes through LayerNorm ln_1 into masked "
         "multi-head self-attention, whose output is added back to x; then through ln_2 into the MLP (d to 4d to d, "
         "GELU), whose output is added back. After the last block, the final LayerNorm ln_f and lm_head, whose "
         "weights are tied to wte, give logits over 50,257 tokens.",
         "GPT-2 (§2.3): pre-LN blocks on a residual stream. Each sub-block reads `LN(x)` and adds its output to `x`; "
         "`ln_f` normalizes the stream once more before `lm_head`, which shares its weights with `wte`.", "90%"),
        ("model-11", "fig-kv-cache-cell",
         "Generation runs the model once per new token. Recomputing the keys and values of the whole prefix at every "
         "step would repeat work: `generate` keeps each layer's keys and values in a cache, so that after one pass "
         "over the prompt every step runs only the newest token ({numref}`fig-kv-cache`), which is what the "
         "`kv_cache` argument in the code above is for (`gpt2lib.model.KVCache` holds them, preallocated).",
         "kv_cache",
         "Diagram of decoding with a key/value cache. A prefill pass computes keys and values for prompt positions "
         "0 to 3. In step 1 only position 4 is computed and its query attends to the five cached positions; steps 2 "
         "and 3 add positions 5 and 6 the same way.",
         "Decoding with a key/value cache: the prompt is processed once (prefill); each later step computes q, k "
         "and v for one new position only, appends k and v to the cache, and attends over everything cached.",
         "100%"),
        ("model-12", "fig-pre-post-ln-cell",
         "{numref}`fig-pre-post-ln` puts the two orders side by side.",
         "pre_post_ln",
         "Two diagrams side by side. Post-LN: the input x goes into a sub-block, the output is added to x, and the "
         "sum passes through LayerNorm, so the residual stream itself is normalized after every sub-block. Pre-LN: "
         "LayerNorm is applied only to the copy of x that enters the sub-block, and the output is added to the "
         "unnormalized x, leaving an identity path along the stream.",
         "Post-LN (the original Transformer, GPT-1) normalizes the residual stream after every addition; pre-LN "
         "(GPT-2) normalizes only what each sub-block reads, so the stream is a plain sum of the embeddings and "
         "every sub-block's output.", "100%"),
        ("model-26", "fig-causal-attention-cell",
         "{numref}`fig-causal-attention` shows the two ideas the maps below are made of: the causal mask, and the "
         "split of the width into heads that each compute their own map.",
         "causal_attention",
         "Left: a six by six grid of attention scores for the tokens 'The cat sat on the mat'; the cells above the "
         "diagonal are minus infinity, so each query row attends only to itself and earlier tokens. Right: the "
         "768-wide input is projected to queries, keys and values, split into 12 heads of 64 columns, each head "
         "computes masked softmax of q k-transpose over square root of 64 times v, and the 12 results are "
         "concatenated and projected back to 768.",
         "Left: the causal mask; query position i may attend to key positions 0 … i, the scores above the diagonal "
         "are set to −∞ before the softmax. Right: multi-head attention in GPT-2 small, 12 heads of 64 dimensions, "
         "each with its own attention map.", "100%"),
    ],
    "training": [
        ("training-02", "fig-training-step-cell",
         "{numref}`fig-training-step` draws one optimizer step with the numbers of the 8-GPU run at the end of this "
         "chapter.",
         "training_step",
         "Diagram of one optimizer step. Eight GPUs each hold a full copy of the model and run four micro-batches "
         "of 16 sequences of 1024 tokens, forward and backward, adding up the gradients. An all-reduce averages "
         "the gradients of all GPUs once per step, then gradients are clipped to norm 1.0 and AdamW updates every "
         "copy the same way. 16 times 1024 times 4 times 8 is 524,288 tokens.",
         "One optimizer step of the paper's batch, 512 sequences × 1024 tokens: each of 8 GPUs accumulates the "
         "gradients of 4 micro-batches of 16 sequences, DDP averages them across GPUs once, and every GPU applies "
         "the same AdamW update.", "100%"),
    ],
    "input_representation": [
        ("input_representation-09", "fig-bpe-merges-cell",
         "{numref}`fig-bpe-merges` shows the whole path from text to tokens on a small example before we train a "
         "real tokenizer.",
         "bpe_merges",
         "Rows of boxes. The text ' the café' is split into the pre-tokens ' the' and ' café', then into UTF-8 "
         "bytes shown with GPT-2's printable stand-ins: the space as G with a dot, and é as the two bytes shown as "
         "A-tilde and copyright sign. Each following row applies one merge: G-dot with t, h with e, G-dot-t with "
         "he, and A-tilde with copyright sign, until ' the' is one token.",
         "Byte-level BPE on an example (the merges shown are illustrative, not GPT-2's ranks): pre-tokenization "
         "splits the text, each pre-token becomes UTF-8 bytes, and learned merges are applied in the order they "
         "were learned, never across a pre-token boundary.", "100%"),
    ],
    "webtext": [
        ("webtext-00", "fig-webtext-pipeline-cell",
         "{numref}`fig-webtext-pipeline` is the map of this chapter.",
         "webtext_pipeline",
         "Flow chart: Reddit submissions, then Stage 1 link filtering (karma at least 3, URL normalisation and "
         "de-duplication, dropping Wikipedia and non-HTML links; 45 million links in the paper), fetching the "
         "pages, Stage 2 HTML to text, Stage 3 heuristic cleaning, Stage 4 exact and near-duplicate removal "
         "(8 million documents, 40 GB in the paper) and Stage 5 token shards.",
         "The WebText pipeline (§2.1) as this chapter runs it: links → pages → text → clean text → de-duplicated "
         "documents → token shards. Numbers in italics are the paper's; the book runs the same stages on a small "
         "sample and does not fetch pages.", "100%"),
    ],
    "language_modeling": [
        ("language_modeling-05", "fig-sliding-window-cell",
         "{numref}`fig-sliding-window` shows the bookkeeping on a file of 16 tokens.",
         "sliding_window",
         "A row of 16 tokens numbered 0 to 15 and three windows of 8 tokens starting at 0, 4 and 8. The first "
         "window scores all its tokens; windows 2 and 3 use their first 4 tokens as context only and score their "
         "last 4, so every token is scored exactly once.",
         "The sliding window with L = 8 and stride = 4: each window scores only the tokens no earlier window "
         "scored, so every token is predicted once, with at least L − stride tokens of context after the first "
         "window.", "100%"),
    ],
    "cbt_lambada_winograd": [
        ("cbt_lambada_winograd-00", "fig-tasks-choose-word-cell",
         "{numref}`fig-tasks-choose-word` shows what the model reads for each task and what is compared.",
         "tasks_choose_word",
         "Three rows. CBT: twenty sentences of a book and a query sentence with a blank; each of the 10 candidates "
         "is filled in and the candidate plus the rest of the sentence is scored. LAMBADA: a passage whose last "
         "word is missing; the model predicts the next word. Winograd: a sentence with a pronoun that is replaced "
         "by each candidate, and the rest of the sentence is scored (partial scoring).",
         "Zero-shot word choice (§3.2-3.4): no task description and no examples; every candidate is written into "
         "the text and the one the language model gives the highest log-probability wins.", "100%"),
    ],
    "reading_summarization": [
        ("reading_summarizatio-00", "fig-tasks-read-summarize-cell",
         "{numref}`fig-tasks-read-summarize` shows the two prompts; the cue at the end is the whole task "
         "specification.",
         "tasks_read_summarize",
         "Two rows. CoQA: a document, the conversation so far as Q and A lines, the new question, and the cue A:, "
         "after which the model's answer is decoded greedily and scored by F1 against four human answers. "
         "Summarization: a news article followed by TL;DR:, after which 100 tokens are sampled with top-k, k = 2, "
         "and the first three sentences are scored with ROUGE.",
         "Reading comprehension and summarization as text (§3.5, §3.6): a cue the web uses (`A:`, `TL;DR:`) "
         "asks for the answer or the summary.", "100%"),
    ],
    "translation_qa": [
        ("translation_qa-00", "fig-tasks-translate-answer-cell",
         "{numref}`fig-tasks-translate-answer` shows the two prompts: a few demonstrations set the format, and "
         "the model continues it.",
         "tasks_translate_answer",
         "Two rows. Translation: example pairs 'English sentence = French sentence', then an English sentence "
         "followed by =, after which greedy decoding gives the translation, scored with BLEU. Question answering: "
         "example 'Q: question A: answer' pairs, then a new question and A:, after which greedy decoding gives a "
         "short answer, scored by exact match.",
         "Translation and question answering (§3.7, §3.8): demonstrations in the prompt, then greedy decoding "
         "after the final `=` or `A:`. The example sentences here are ours.", "100%"),
    ],
}


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)  # no options: --help explains, anything else is an error (and nothing is written)
    books = {}
    for chapter, cells in CELLS.items():
        path = root / "book" / f"{chapter}.ipynb"
        try:
            nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError, TypeError, AttributeError) as e:  # missing, or not a notebook
            parser.error(f"{path}: {' '.join(str(e).split())[:200]}")
        ids = [c.get("id") for c in nb.cells]
        lost = [after for after, new_id, *_ in cells if new_id not in ids and after not in ids]
        if lost:
            parser.error(f"{path}: no cell {', '.join(lost)} to insert the diagram after; nothing was written")
        books[path] = (nb, cells)
    for path, (nb, cells) in books.items():
        for after, new_id, lead, file, alt, caption, width in cells:
            source = lead + "\n\n" + FIG.format(file=file, alt=alt, name=file.replace("_", "-"), width=width,
                                                caption=caption)
            ids = [c.get("id") for c in nb.cells]
            cell = nbformat.v4.new_markdown_cell(source)
            cell["id"] = new_id
            if new_id in ids:
                nb.cells[ids.index(new_id)] = cell
            else:
                nb.cells.insert(ids.index(after) + 1, cell)
        nbformat.write(nb, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
