"""De-tokenizers for word-level benchmarks (GPT-2 §3.1).

Benchmarks such as WikiText and the Penn Treebank were distributed *already tokenized*:
punctuation is split off (``Teddy 's Story``), hyphens are escaped (``guest @-@ starring``) and
rare words are replaced by ``<unk>``. GPT-2 reads raw bytes, so this text looks odd to it. The
paper (Radford et al. 2019, §3.1) says:

    "We report our main results in Table 3 using invertible de-tokenizers which remove as many
    of these tokenization / pre-processing artifacts as possible. Since these de-tokenizers are
    invertible, we can still calculate the log probability of a dataset and they can be thought
    of as a simple form of domain adaptation. We observe gains of 2.5 to 5 perplexity for GPT-2
    with these de-tokenizers."

OpenAI did not release their de-tokenizers. The rules below are ours, written from the data.
They are "invertible-ish": every rule undoes one mechanical step of the original tokenizer, so
the original token sequence (and therefore the number of words the benchmark's perplexity is
normalized by) is unchanged; we do not promise byte-exact inversion of every odd line.
Every normalization uses the units of the *original* file: perplexity its word count (see
``gpt2lib.evaluate.count_words``), bits per byte / character its UTF-8 bytes / characters (as
lm-evaluation-harness does), never the de-tokenized text's, so de-tokenizing changes the model's
log-probability but not the denominator (``bpb_read`` in :class:`gpt2lib.evaluate.LMResult` is
the one exception, labelled as per byte of what the model read).

``<unk>`` cannot be undone (the word is lost). It is kept as the literal string ``<unk>`` by
default; the paper notes it is "extremely rare in WebText - occurring only 26 times in 40 billion
bytes", so it costs a few tokens of surprise each time.
"""
from __future__ import annotations

import re

__all__ = ["wikitext_detokenize", "ptb_detokenize", "lm1b_detokenize", "cbt_detokenize", "harness_wikitext_detokenize",
           "DETOKENIZERS"]

# English clitics that the Moses/PTB-style tokenizers split off the previous word.
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "'S", "N'T", "'RE", "'VE", "'LL", "'D", "'M")


def _join_clitics(text: str) -> str:
    for clitic in _CLITICS:
        text = text.replace(" " + clitic, clitic)
    # WikiText splits negations after the n: "don 't" -> "don't".
    text = re.sub(r"n 't\b", "n't", text)
    # "s '" (plural possessive: "the players ' union") -> "players' union"
    text = re.sub(r"(\w)s ' ", r"\1s' ", text)
    return text


def _detokenize_line_wikitext(line: str) -> str:
    s = line.strip(" ")
    # Escaped in-number and in-word separators: 1 @,@ 000 / 3 @.@ 5 / guest @-@ starring.
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    # Section headings: "= = Career = =" -> "== Career ==" (also "= = = Sub = = =").
    heading = re.fullmatch(r"((?:= )+)(.*?)((?: =)+)", s)
    if heading and heading.group(1).count("=") == heading.group(3).count("="):
        bars = "=" * heading.group(1).count("=")
        return f"{bars} {_detokenize_sentence(heading.group(2))} {bars}"
    return _detokenize_sentence(s)


def _detokenize_sentence(s: str) -> str:
    # Paired double quotes on one line: 'as " Craig " in' -> 'as "Craig" in'.
    s = re.sub(r'" ([^"]*?) "(?= |$)', r'"\1"', s)
    # Brackets hug their content.
    s = re.sub(r"([(\[{]) ", r"\1", s)
    s = re.sub(r" ([)\]}])", r"\1", s)
    # Punctuation attaches to the word before it.
    s = re.sub(r" ([.,;:!?%])(?=[ \"')\]}]|$)", r"\1", s)
    s = _join_clitics(s)
    return s


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization line by line (GPT-2 §3.1 de-tokenizer; rules are ours).

    Each line of ``wiki.*.tokens`` starts with a space and ends with `` \\n``; blank lines are
    `` \\n``. Examples of the rules:

    ``guest @-@ starring`` -> ``guest-starring``; ``1 @,@ 000`` -> ``1,000``; ``3 @.@ 5`` -> ``3.5``;
    ``= = Career = =`` -> ``== Career ==``; ``Teddy 's Story`` -> ``Teddy's Story``;
    ``did n't`` / ``don 't`` -> ``didn't`` / ``don't``; ``actor . He`` -> ``actor. He``; ``( born 1970 )`` -> ``(born 1970)``;
    ``as " Craig " in`` -> ``as "Craig" in``. ``<unk>`` is kept.
    """
    return "\n".join(_detokenize_line_wikitext(line) for line in text.split("\n"))


def ptb_detokenize(text: str, unk: str = "<unk>") -> str:
    """Undo the Mikolov Penn Treebank preprocessing as far as it can be undone (GPT-2 §3.1).

    PTB (``ptb.test.txt``) is lower-cased, has no punctuation, maps every number to ``N`` and
    rare words to ``<unk>``; each line is one sentence, `` words ... \\n``. Only the clitic split
    can be undone (``was n't`` -> ``wasn't``, ``company 's`` -> ``company's``); casing,
    punctuation and numbers are gone for good. ``<unk>`` is replaced by ``unk`` (default: kept as
    is; pass e.g. ``unk="unknown"`` to try another surface form, the word count is unaffected).
    """
    lines = []
    for line in text.split("\n"):
        s = line.strip(" ")
        s = _join_clitics(s)
        if unk != "<unk>":
            s = s.replace("<unk>", unk)
        lines.append(s)
    return "\n".join(lines)


def lm1b_detokenize(text: str) -> str:
    """Undo the One Billion Word benchmark's tokenization line by line (GPT-2 §3.1; rules are ours).

    1BW (``news.en.heldout-*``) is one sentence per line with punctuation and clitics split off
    (``It 's`` / ``U.S. , the`` / ``" Yes , " he said``). The sentence rules of
    :func:`wikitext_detokenize` apply: ``It 's a test , he said .`` -> ``It's a test, he said.``.
    The sentences are shuffled, which no de-tokenizer can undo.
    """
    return "\n".join(_detokenize_sentence(line.strip(" ")) for line in text.split("\n"))


_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


def cbt_detokenize(text: str) -> str:
    """Undo the PTB-style tokenization of the Children's Book Test (GPT-2 §3.2: "A de-tokenizer was
    applied to remove PTB style tokenization artifacts from CBT"; the rules are ours).

    CBT's sentences are split into tokens with PTB conventions: ```` `` Well , '' said the king .``
    -> ``"Well," said the king.``; ``-LRB- a -RRB-`` -> ``(a)`` (also ``-LSB-``/``-RSB-``, ``-LCB-``/``-RCB-``);
    clitics and punctuation as in :func:`lm1b_detokenize` (``did n't`` -> ``didn't``, ``king 's`` -> ``king's``).
    The blank ``XXXXX`` is a word like any other, so a query keeps it in place."""
    for token, bracket in _PTB_BRACKETS.items():
        text = text.replace(token, bracket)
    text = re.sub(r"``\s*", '"', text)  # an opening quote hugs the next word
    text = re.sub(r"\s*''", '"', text)  # a closing quote hugs the previous one
    return _detokenize_sentence(text.strip(" "))


# lm-evaluation-harness's `wikitext` de-tokenizer (lm_eval/tasks/wikitext/preprocess_wikitext.py), as
# its published list of rules, applied in order to a whole page: (regex?, pattern, replacement).
_HARNESS_RULES: list[tuple[bool, str, str]] = [
    (False, "s '", "s'"), (True, r"/' [0-9]/", r"/'[0-9]/"),
    (False, " @-@ ", "-"), (False, " @,@ ", ","), (False, " @.@ ", "."),
    (False, " : ", ": "), (False, " ; ", "; "), (False, " . ", ". "), (False, " ! ", "! "), (False, " ? ", "? "),
    (False, " , ", ", "),
    (True, r"\(\s*([^\)]*?)\s*\)", r"(\1)"), (True, r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    (True, r"{\s*([^}]*?)\s*}", r"{\1}"), (True, r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    (True, r"'\s*([^']*?)\s*'", r"'\1'"),
    (False, "= = = =", "===="), (False, "= = =", "==="), (False, "= =", "=="),
    (False, " \u00b0 ", "\u00b0"), (False, " \n", "\n"), (False, "\n ", "\n"), (False, " N ", " 1 "),
    (False, " 's", "'s"),
]


def harness_wikitext_detokenize(page: str) -> str:
    """lm-evaluation-harness's WikiText de-tokenizer (its ``wikitext`` task), for ``convention="lm-eval"``.

    Not invertible and different from :func:`wikitext_detokenize` (e.g. it joins quotes greedily
    across a page and turns `` N `` into `` 1 ``); used only to reproduce the harness's numbers."""
    for is_regex, pattern, repl in _HARNESS_RULES:
        page = re.sub(pattern, repl, page) if is_regex else page.replace(pattern, repl)
    return page


DETOKENIZERS = {"wikitext": wikitext_detokenize, "ptb": ptb_detokenize, "1bw": lm1b_detokenize, "cbt": cbt_detokenize}
