"""gpt2lib.miniworld: the miniature web with naturally occurring demonstrations, and its zero-shot evaluation."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from gpt2lib.bpe import BytePairTokenizer
from gpt2lib.miniworld import (ACTIVITIES, PLACES, TASKS, WorldConfig, evaluate_zero_shot, held_out, make_world,
                               occurrences, with_demonstration)

SMALL = WorldConfig(n_docs=1500)


@pytest.fixture(scope="module")
def world():
    return make_world(SMALL)


@pytest.fixture(scope="module")
def control():
    return make_world(SMALL, control=True)


@pytest.fixture(scope="module")
def tok(world):
    return BytePairTokenizer(name="miniworld-bpe").train(world.text, 1024)


def test_the_world_is_deterministic_and_the_seed_matters():
    a, b = make_world(SMALL), make_world(SMALL)
    assert a.documents == b.documents and a.vellish == b.vellish
    assert held_out(a) == held_out(b)
    c = make_world(WorldConfig(n_docs=1500, seed=1))
    assert c.documents != a.documents


def test_every_kind_of_document_and_demonstration_occurs(world):
    assert set(world.kinds) == set(TASKS)
    text = world.text
    assert re.search(r'"[a-z]+ [a-z]+" in Vellish\.', text)
    assert re.search(r"Where did [A-Z][a-z]+ go\? [A-Z][a-z]+ went to the [a-z]+\.", text)
    assert re.search(r"more, which made \d+ [a-z]+ in all\.", text)
    assert re.search(r"In short: [A-Z][a-z]+ [a-z]+ [a-z ]+\.", text)


def _words_of(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]+", text))


@pytest.mark.parametrize("which", ["world", "control"])
def test_held_out_instances_never_occur_in_the_corpus(which, world, control):
    corpus = world if which == "world" else control
    words = _words_of(corpus.text)
    # the search can find things: every training name is in the corpus, as a word
    assert set(corpus.train_names) <= words
    for name in corpus.heldout_names:
        assert name not in words and name.lower() not in corpus.text.lower()
        assert occurrences(corpus, name) == 0
    for adj, noun in corpus.heldout_pairs:
        vellish = f"{corpus.vellish[noun]} {corpus.vellish[adj]}"
        assert vellish not in corpus.text
        assert re.search(rf"\b{adj} {noun}\b", corpus.text) is None
    every_name = set(corpus.train_names) | set(corpus.heldout_names)
    for inst in held_out(corpus):
        assert inst.prompt not in corpus.text
        names = _words_of(inst.prompt) & every_name
        assert names <= set(corpus.heldout_names) and not names & words
        assert bool(names) == (inst.task != "translate")


def test_the_control_is_the_world_without_its_demonstrations(world, control):
    assert len(control.documents) == len(world.documents)
    text = control.text
    for marker in ("Vellish.", '"', "Where did", "In short:", "which made"):
        assert marker not in text, marker
    assert sum(c != w for c, w in zip(control.documents, world.documents)) > 0.4 * len(world.documents)

    def subsequence(short: str, long: str) -> bool:
        it = iter(long)
        return all(ch in it for ch in short)

    assert all(subsequence(c, w) for c, w in zip(control.documents, world.documents))


def test_bad_world_settings_are_refused():
    with pytest.raises(ValueError, match="demo_rate"):
        make_world(WorldConfig(demo_rate=1.5))
    with pytest.raises(ValueError, match="kind"):
        make_world(WorldConfig(kinds=("poetry",)))


def test_held_out_instances_are_well_formed(world):
    insts = held_out(world, n_per_task=20)
    assert [i.task for i in insts] == [t for t in TASKS for _ in range(20)]
    for i in insts:
        assert len(i.choices) == 4 and len(set(i.choices)) == 4 and i.choices[i.label] == i.answer
    counts = [i for i in insts if i.task == "count"]
    for i in counts:  # the answer is the sum the prompt states, recomputed from its text
        x, y = map(int, re.findall(r"had (\d+) \w+ and \w+ gave \w+ (\d+) more, which made$", i.prompt)[0])
        assert int(i.answer) == x + y
    for i in insts:
        if i.task == "story":  # the answer is where the story says the asked-about person went
            who = re.search(r"Where did (\w+) go\?", i.prompt).group(1)
            assert f"{who} went to the{i.answer[:-1]}." in i.prompt
        if i.task == "gist":
            assert i.answer.strip(" .") in ACTIVITIES
        if i.task == "story":
            assert i.answer.strip(" .") in PLACES


class _Oracle(torch.nn.Module):
    """A hand-made "language model" that knows one continuation of each prompt: at every position whose prefix
    is a prefix of one of ``texts`` it puts all its mass on that text's next token."""

    def __init__(self, tok, texts: list[str], block_size: int = 256):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # tells the scorer which device the model is on
        self.n_vocab = tok.n_vocab
        self.next: dict[tuple[int, ...], int] = {}
        for t in texts:
            ids = tok.encode(t)
            for k in range(1, len(ids)):
                self.next[tuple(ids[:k])] = ids[k]

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.n_vocab)
        for b in range(B):
            row = idx[b].tolist()
            for t in range(T):
                nxt = self.next.get(tuple(row[: t + 1]))
                if nxt is not None:
                    logits[b, t, nxt] = 30.0
        return logits


def test_a_perfect_model_scores_everything_and_a_wrong_one_nothing(world, tok):
    insts = held_out(world, n_per_task=12)
    perfect = evaluate_zero_shot(_Oracle(tok, [i.prompt + i.answer for i in insts]), tok, insts)
    wrong = evaluate_zero_shot(_Oracle(tok, [i.prompt + i.choices[(i.label + 1) % 4] for i in insts]), tok, insts)
    assert list(perfect) == list(TASKS)
    for task in TASKS:
        assert (perfect[task].accuracy, perfect[task].greedy, perfect[task].n) == (1.0, 1.0, 12)
        assert perfect[task].answer_nll < 1e-6 and perfect[task].chance == 0.25
        assert (wrong[task].accuracy, wrong[task].greedy) == (0.0, 0.0)
        assert wrong[task].answer_nll > 5  # at least one answer token in four costs ~30 - log(vocab) nats


def test_a_model_that_knows_nothing_scores_chance(world, tok):
    """Uniform logits: every choice's log-prob is -n_tokens log V; the choice with fewest tokens wins, which is
    right for about a quarter of the instances, never for all."""
    insts = held_out(world, n_per_task=40)
    blind = _Oracle(tok, [])
    res = evaluate_zero_shot(blind, tok, insts)
    for task in TASKS:
        assert res[task].greedy == 0.0
        assert res[task].answer_nll == pytest.approx(torch.log(torch.tensor(float(tok.n_vocab))).item(), rel=1e-6)
        assert res[task].accuracy < 0.7


def test_one_shot_prompts_show_one_solved_example_of_the_same_task_with_another_answer(world):
    insts = held_out(world, n_per_task=20)
    shots = with_demonstration(insts)
    assert shots == with_demonstration(insts) and shots != with_demonstration(insts, seed=1)  # seeded
    by_prompt = {i.prompt: i for i in insts}
    for plain, shot in zip(insts, shots):
        assert (shot.task, shot.answer, shot.choices, shot.label) == (plain.task, plain.answer, plain.choices,
                                                                      plain.label)
        demo, sep, rest = shot.prompt.partition("\n\n")
        assert sep and rest == plain.prompt  # the example, a blank line, then the unchanged prompt
        # a solved instance, found by search (a translation's sentence closed after the answer)
        shown = next(i for p, i in by_prompt.items() if demo in (p + i.answer, p + i.answer + '".'))
        assert shown.task == plain.task and shown.answer != plain.answer and shown is not plain
    with pytest.raises(ValueError, match="no other 'count' instance"):
        with_demonstration([i for i in insts if i.task == "count"][:1])


def test_a_perfect_model_still_scores_everything_with_an_example_in_the_prompt(world, tok):
    insts = with_demonstration(held_out(world, n_per_task=8))
    perfect = evaluate_zero_shot(_Oracle(tok, [i.prompt + i.answer for i in insts]), tok, insts)
    assert all((perfect[t].accuracy, perfect[t].greedy) == (1.0, 1.0) for t in TASKS)
