"""Text the tokenizer tests compare against tiktoken: the mirror's corpora plus hand-made edge cases."""
from __future__ import annotations

import json
import re
from pathlib import Path

import hypothesis.strategies as st

# Hand-made cases, each aimed at one rule of GPT-2's pre-tokenizer or at UTF-8 handling.
EDGE_CASES = [
    "",
    "Hello world",
    "日本語のテキストを分割する",  # Japanese
    "中文字符测试，标点。",  # Chinese with full-width punctuation
    "한국어 문장입니다",  # Korean
    "مرحبا بالعالم",  # Arabic (right-to-left)
    "नमस्ते दुनिया",  # Hindi (combining vowel signs)
    "Привет, мир! Ёлка",  # Cyrillic
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 tone",  # emoji with zero-width joiners and modifiers
    "\u200d\u200d lone joiners",
    "e\u0301 combining accent vs \u00e9",
    "def f(x):\n    return x ** 2  # square\n",
    "\tif (a != b) {\n\t\treturn -1;\n\t}",
    "\n\n\n",
    "   x",
    "trailing spaces   ",
    " ",
    "\r\n\r\n",
    "a\u00a0b\u3000c",  # no-break space, ideographic space
    "1234567890 3.14159 1,000,000 2019-02-14",
    "I'M here, don't go, DON'T GO, we'll they've she'd it's I'd",
    "'s 're ' s",
    "<|endoftext|>",
    "<|endoftext|>Hello<|endoftext|> world <|endoftext",
    "Ġ Ċ already-mapped characters",
    "\x00\x01\x7f control bytes",
    "a" * 300,
    "word " * 50,
    # long pre-tokens (issue 9): merged with the heap, not the rescan
    "GATTACAGATTACACCGGTTAACGT" * 40,  # DNA: one 1,000-letter pre-token
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==" * 8,
    "function(a,b){return a+b};var x=[1,2,3].map(function(y){return y*2});" * 6,  # minified code
    "-" * 500 + "=" * 77 + "." * 64,
    "1234567890" * 60,
]

# Pieces that exercise GPT-2's split rules when glued together in random orders.
TRICKY_PIECES = [" ", "  ", "\n", "\t", "a", "B", "'", "s", "t", "ll", "1", "23", ".", "!?", "é",
                 "ß", "日", "😀", "\u200d", "<|endoftext|>", "Ġ", "\r", "\u00a0"]

tricky_text = st.lists(st.sampled_from(TRICKY_PIECES), max_size=30).map("".join)


def mirror_documents(mirror: Path) -> dict[str, list[str]]:
    """Documents from each text file in the data mirror, by corpus name."""
    shakespeare = (mirror / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    jsonl = lambda p, key: [json.loads(ln)[key] for ln in (mirror / p).read_text(encoding="utf-8").splitlines()]
    sgm = (mirror / "wmt14/newstest2014-fren-ref.fr.sgm").read_text(encoding="utf-8")
    return {
        "tinyshakespeare": shakespeare.split("\n\n"),
        "webtext": jsonl("webtext/webtext.train.first1408.jsonl", "text"),
        "wikitext-2": (mirror / "wikitext-2/valid.txt").read_text(encoding="utf-8").split("\n \n"),
        "ptb": (mirror / "ptb/ptb.test.txt").read_text(encoding="utf-8").splitlines(keepends=True),
        "lambada": jsonl("lambada/lambada_test.jsonl", "text"),
        "wmt14-fr": re.findall(r"<seg id=\"\d+\">(.*?)</seg>", sgm),
        "nq-open": jsonl("nq_open/NQ-open.dev.jsonl", "question"),
    }
