"""gpt2lib's zero-shot evaluation beside EleutherAI's lm-evaluation-harness, on the same model and data (GPT-2 §3).

Not part of CI (it needs ``pip install lm-eval accelerate``, which pull in ``datasets`` and more). What it does:

1. exports a model with ``save_pretrained`` into a temporary Hugging Face folder, with GPT-2's
   ``vocab.json`` / ``merges.txt`` taken from the data mirror so the harness's tokenizer loads offline;
2. writes two *local* task definitions for the harness, on the mirror's files: ``wikitext_local`` (the
   harness's ``wikitext`` task: WikiText-2 test split into pages, ``loglikelihood_rolling``, its
   ``word_perplexity`` / ``byte_perplexity`` / ``bits_per_byte``) and ``lambada_local`` (its
   ``lambada_openai``: ``acc`` and ``perplexity`` on OpenAI's jsonl);
3. runs the harness (``lm_eval.simple_evaluate``, model ``hf``) and gpt2lib with ``convention="lm-eval"``
   on the same slices, and prints one row per metric with both numbers and their difference.

    python benchmarks/lm_eval_harness_crosscheck.py --model zoo:webtext-tiny --wikitext-lines 400 --lambada 200
    python benchmarks/lm_eval_harness_crosscheck.py --model gpt2 --device cuda       # full test sets

How a user evaluates a gpt2lib model with the harness (what step 1 and 3 do): ``model.save_pretrained(DIR)``
writes a ``transformers``-compatible folder; add GPT-2's tokenizer files (``vocab.json``, ``merges.txt``, e.g.
``transformers.GPT2TokenizerFast.from_pretrained("gpt2").save_pretrained(DIR)`` when online) and run
``lm_eval --model hf --model_args pretrained=DIR --tasks wikitext,lambada_openai``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

WIKITEXT_YAML = """\
task: wikitext_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {pages}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: !function local_utils.detokenize
process_results: !function local_utils.process_results
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""

LAMBADA_YAML = """\
task: lambada_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {passages}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

# The harness imports this file for `wikitext_local`; the de-tokenizer is gpt2lib's transcription of the
# harness's rule list, the counts are the harness's definitions (words and bytes of the original page).
UTILS_PY = '''\
import re

from gpt2lib.detokenize import harness_wikitext_detokenize


def detokenize(doc):
    return harness_wikitext_detokenize(doc["page"])


def process_results(doc, results):
    r = results[0]  # a float, or (loglikelihood, is_greedy) in newer harness versions
    ll = r[0] if isinstance(r, (tuple, list)) else r
    words, nbytes = len(re.split(r"\\s+", doc["page"])), len(doc["page"].encode("utf-8"))
    return {"word_perplexity": (ll, words), "byte_perplexity": (ll, nbytes), "bits_per_byte": (ll, nbytes)}
'''


def export(model, out: Path) -> None:
    """A Hugging Face folder: the weights (save_pretrained) and GPT-2's tokenizer files from the mirror."""
    from gpt2lib import datasets

    model.save_pretrained(str(out))
    shutil.copyfile(datasets.download("gpt2-encoder-json", progress=False), out / "vocab.json")
    shutil.copyfile(datasets.download("gpt2-vocab-bpe", progress=False), out / "merges.txt")
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": model.config.block_size,
                                                           "tokenizer_class": "GPT2Tokenizer"}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:webtext-tiny")
    ap.add_argument("--wikitext-lines", type=int, default=400, help="first N lines of WikiText-2 test (0: all)")
    ap.add_argument("--lambada", type=int, default=200, help="first N LAMBADA passages (0: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args(argv)

    from gpt2lib import datasets
    from gpt2lib.evaluate import load_model
    from gpt2lib.tasks import lambada, lm
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    try:
        import lm_eval
    except ImportError as e:
        print(f"lm-evaluation-harness is not installed ({e}); pip install lm-eval accelerate", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    model, tok = load_model(args.model, args.device), get_gpt2_tokenizer()
    original = datasets.read_text("wikitext-2-test")
    if args.wikitext_lines:
        original = "".join(original.splitlines(keepends=True)[: args.wikitext_lines])
    passages = lambada.load_lambada()[: args.lambada or None]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export(model, tmp / "model")
        tasks = tmp / "tasks"
        tasks.mkdir()
        with open(tmp / "pages.jsonl", "w", encoding="utf-8") as f:
            for page in lm.wikitext_pages(original):
                f.write(json.dumps({"page": page}) + "\n")
        with open(tmp / "lambada.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps({"text": p}) + "\n")
        (tasks / "wikitext_local.yaml").write_text(WIKITEXT_YAML.format(pages=tmp / "pages.jsonl"))
        (tasks / "lambada_local.yaml").write_text(LAMBADA_YAML.format(passages=tmp / "lambada.jsonl"))
        (tasks / "local_utils.py").write_text(UTILS_PY)

        from lm_eval.tasks import TaskManager

        out = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={tmp / 'model'},dtype=float32", tasks=["wikitext_local", "lambada_local"],
            task_manager=TaskManager(include_path=str(tasks)), device=args.device, batch_size=args.batch_size)
        harness = {t: {k.split(",")[0]: v for k, v in r.items() if "," in k and "stderr" not in k}
                   for t, r in out["results"].items()}

    ours_w = lm.wikitext2(model, tok, limit=args.wikitext_lines or None, convention="lm-eval",
                          batch_size=args.batch_size).metrics
    ours_l = lambada.evaluate_lambada(model, tok, passages, batch_size=args.batch_size, convention="lm-eval").metrics
    rows = [("wikitext", m, harness["wikitext_local"][m], ours_w[m])
            for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")]
    rows += [("lambada_openai", "perplexity", harness["lambada_local"]["perplexity"], ours_l["ppl"]),
             ("lambada_openai", "acc", harness["lambada_local"]["acc"], ours_l["acc"] / 100)]
    print(f"model {args.model}; WikiText-2 test, first {args.wikitext_lines or 'all'} lines "
          f"({ours_w['documents']} pages); LAMBADA, {len(passages)} passages")
    print("| task | metric | lm-evaluation-harness | gpt2lib | relative difference |")
    print("| --- | --- | ---: | ---: | ---: |")
    for task, metric, h, o in rows:
        rel = abs(h - o) / max(abs(h), 1e-12)
        print(f"| {task} | {metric} | {h:.6g} | {o:.6g} | {rel:.1e} |")
    print(textwrap.dedent("""
        Same model, same data, same definitions: differences are float rounding (batching, padding).""").strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
