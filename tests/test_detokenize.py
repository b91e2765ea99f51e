"""De-tokenizers undo WikiText / PTB tokenization (GPT-2 §3.1), checked on known strings and real files."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gpt2lib.detokenize import ptb_detokenize, wikitext_detokenize
from gpt2lib.evaluate import count_words


@pytest.mark.parametrize(
    "tokenized, expected",
    [
        (" He had a guest @-@ starring role ", "He had a guest-starring role"),
        (" 1 @,@ 000 people ", "1,000 people"),
        (" 3 @.@ 5 km ", "3.5 km"),
        (" = Robert Boulter = ", "= Robert Boulter ="),
        (" = = Career = = ", "== Career =="),
        (" = = = 2000 – 2005 = = = ", "=== 2000 – 2005 ==="),
        (" the episode \" Teddy 's Story \" of ", "the episode \"Teddy's Story\" of"),
        (" he did n't go ", "he didn't go"),
        (" they 're here and we 've gone , I 'm sure ", "they're here and we've gone, I'm sure"),
        (" an actor . He was ", "an actor. He was"),
        (" born ( 1970 ) in ; here : there ! ", "born (1970) in; here: there!"),
        (" the players ' union ", "the players' union"),
        (" Judge John <unk> in 2002 ", "Judge John <unk> in 2002"),
        (" he did n't but don 't ", "he didn't but don't"),
        (" \n", "\n"),
    ],
)
def test_wikitext_detokenizer_on_known_strings(tokenized: str, expected: str) -> None:
    """Each WikiText artifact the paper's de-tokenizers target is undone exactly."""
    assert wikitext_detokenize(tokenized) == expected


def test_wikitext_detokenizer_keeps_lines_and_unk() -> None:
    text = " = Title = \n \n He was n't there . \n"
    assert wikitext_detokenize(text) == "= Title =\n\nHe wasn't there.\n"


@pytest.mark.parametrize(
    "tokenized, expected",
    [
        (" no it was n't black monday \n", "no it wasn't black monday\n"),
        (" the company 's shares fell N % \n", "the company's shares fell N %\n"),
        (" the <unk> board \n", "the <unk> board\n"),
    ],
)
def test_ptb_detokenizer_on_known_strings(tokenized: str, expected: str) -> None:
    assert ptb_detokenize(tokenized) == expected


def test_ptb_unk_replacement_changes_only_unk() -> None:
    assert ptb_detokenize(" a <unk> b \n", unk="unknown") == "a unknown b\n"


def test_detokenizers_on_real_files_remove_artifacts(data_mirror) -> None:
    """On the real test files: no ' @-@ ', ' , ' or " n't" survives, and lines are preserved."""
    wt = (data_mirror / "wikitext-2" / "test.txt").read_text(encoding="utf-8")
    out = wikitext_detokenize(wt)
    assert out.count("\n") == wt.count("\n")
    for artifact in (" @-@ ", " @,@ ", " @.@ ", " , ", " 's ", "n 't "):
        assert artifact in wt and artifact not in out
    ptb = (data_mirror / "ptb" / "ptb.test.txt").read_text(encoding="utf-8")
    out = ptb_detokenize(ptb)
    assert out.count("\n") == ptb.count("\n") and " n't " not in out and "<unk>" in out


_word = st.text(alphabet="abcdefgXYZ0123", min_size=1, max_size=6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(_word, min_size=1, max_size=8), min_size=1, max_size=5))
def test_plain_words_pass_through_unchanged(lines: list[list[str]]) -> None:
    """Text without any tokenization artifact is only stripped of the per-line padding."""
    tokenized = "".join(" " + " ".join(ws) + " \n" for ws in lines)
    expected = "".join(" ".join(ws) + "\n" for ws in lines)
    assert wikitext_detokenize(tokenized) == expected
    assert ptb_detokenize(tokenized) == expected
    assert count_words(tokenized) == sum(len(ws) for ws in lines) + len(lines)


def test_lm1b_detokenizer_on_known_strings() -> None:
    from gpt2lib.detokenize import lm1b_detokenize

    assert lm1b_detokenize("It 's a test , he said .\n\" Yes , \" he did n't say .") == \
        "It's a test, he said.\n\"Yes,\" he didn't say."
    assert lm1b_detokenize("A ( small ) case ; ok ?") == "A (small) case; ok?"


def test_harness_wikitext_detokenizer_rules_by_hand() -> None:
    """The lm-evaluation-harness wikitext rules, checked on strings worked out by hand from its rule list."""
    from gpt2lib.detokenize import harness_wikitext_detokenize as h

    assert h(" = = Career = = \n") == " == Career ==\n"
    assert h("1 @,@ 000 km @-@ long , 3 @.@ 5 . Next") == "1,000 km-long, 3.5. Next"
    assert h("the players ' union") == "the players' union"
    assert h("a ( b c ) [ d ] \" e \" f") == "a (b c) [d] \"e\" f"
    assert h("Teddy 's N cats") == "Teddy's 1 cats"  # " N " -> " 1 " runs before " 's" -> "'s"
    assert h("N cats") == "N cats"  # " N " needs a space on both sides
    assert h("has N cats") == "has 1 cats"
    assert h("it was 5 \u00b0 C") == "it was 5\u00b0C"
