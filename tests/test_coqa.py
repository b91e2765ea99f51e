"""§3.5 CoQA (gpt2lib.tasks.coqa): the reader on a hand-written file in the official v1.0 layout, the
official F1 (leave-one-out over the human answers) against hand arithmetic, and the task end to end
against `transformers`' greedy answers."""
from __future__ import annotations

import json

import pytest
import torch

from _evalref import make_pair
from gpt2lib.tokenizer import get_gpt2_tokenizer

EOT = 50256


def _answer(turn: int, text: str, span: str = "") -> dict:
    return {"span_start": 0, "span_end": len(span), "span_text": span or text, "input_text": text, "turn_id": turn}


# Two stories in the layout of coqa-dev-v1.0.json: the first with the three additional human answers
# per turn that the dev set has, the second with only the primary answers.
OFFICIAL = {
    "version": "1.0",
    "data": [
        {
            "source": "mctest", "id": "story-a", "filename": "mc160.test.1", "name": "mc160.test.1",
            "story": "Cotton was a white kitten who lived in a barn. She went to Paris with her mother.",
            "questions": [{"input_text": "What color was Cotton?", "turn_id": 1},
                          {"input_text": "Where did she go?", "turn_id": 2}],
            "answers": [_answer(1, "white"), _answer(2, "Paris")],
            "additional_answers": {
                "0": [_answer(1, "white"), _answer(2, "Paris")],
                "1": [_answer(1, "a white kitten"), _answer(2, "in Paris, France")],
                "2": [_answer(1, "White."), _answer(2, "London")],
            },
        },
        {
            "source": "cnn", "id": "story-b", "filename": "cnn_x.story",
            "story": "The council approved a new park on Monday.",
            "questions": [{"input_text": "What was approved?", "turn_id": 1}],
            "answers": [_answer(1, "a new park")],
        },
    ],
}


@pytest.fixture
def coqa_file(tmp_path):
    path = tmp_path / "coqa-dev-v1.0.json"
    path.write_text(json.dumps(OFFICIAL), encoding="utf-8")
    return path


def test_reader_builds_turns_golds_and_history(coqa_file) -> None:
    from gpt2lib.tasks.coqa import coqa_prompt, read_coqa

    turns = read_coqa(coqa_file)
    assert [(t.story_id, t.turn_id, t.source) for t in turns] == [("story-a", 1, "mctest"), ("story-a", 2, "mctest"),
                                                                  ("story-b", 1, "cnn")]
    assert turns[0].answers == ["white", "white", "a white kitten", "White."]
    assert turns[1].answers == ["Paris", "Paris", "in Paris, France", "London"]
    assert turns[1].history == [("What color was Cotton?", "white")] and turns[2].history == []
    assert turns[2].answers == ["a new park"]
    assert coqa_prompt(turns[1]) == (
        "Cotton was a white kitten who lived in a barn. She went to Paris with her mother.\n\n"
        "Q: What color was Cotton?\nA: white\n\nQ: Where did she go?\nA:")


def test_official_f1_leaves_each_human_answer_out(coqa_file) -> None:
    from gpt2lib.tasks.coqa import read_coqa, turn_score

    _, where, park = read_coqa(coqa_file)
    # "London" matches only the 4th human answer: the three groups that keep it score 1, the group that
    # leaves it out scores 0 (Paris / Paris / paris france share no word with london) -> 3/4.
    assert turn_score("London", where.answers) == pytest.approx({"em": 0.75, "f1": 0.75})
    # "Paris" is in every group (two human answers say it) -> 1.
    assert turn_score("paris!", where.answers) == pytest.approx({"em": 1.0, "f1": 1.0})
    # "France": best is "in Paris, France" ("in paris france": P=1, R=1/3, F1=1/2), present in 3 of the 4
    # groups; the group without it scores 0 -> 3/4 * 1/2 = 3/8, and no exact match.
    assert turn_score("France", where.answers) == pytest.approx({"em": 0.0, "f1": 0.375})
    # One human answer: plain F1 against it. "new park" vs "a new park" -> 1; "park" -> P=1, R=1/2 -> 2/3.
    assert turn_score("The new park", park.answers) == pytest.approx({"em": 1.0, "f1": 1.0})
    assert turn_score("park", park.answers)["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least one gold"):
        turn_score("x", [])


@pytest.mark.parametrize("pred, gold, f1", [
    ("", "", 1.0),
    ("", "white", 0.0),
    ("an", "the", 1.0),  # both normalize to nothing
    ("a white kitten", "White.", 2 * (1 / 2) * 1 / (1 / 2 + 1)),
    ("white white", "white", 2 * (1 / 2) * 1 / (1 / 2 + 1)),  # the overlap is clipped to the gold count
])
def test_official_token_f1_by_hand(pred, gold, f1) -> None:
    from gpt2lib.tasks.coqa import f1_score

    assert f1_score(pred, gold) == pytest.approx(f1)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["data"][0]["questions"][1].update(turn_id=3), "story story-a turn 2"),
    (lambda d: d["data"][0]["additional_answers"]["1"].pop(), "shorter"),
    (lambda d: d["data"][1].pop("story"), "story story-b"),
    (lambda d: d.pop("data"), "'data'"),
    (lambda d: d.update(data=[]), "no CoQA questions"),
    # a turn that is not an object, or lacks its text: before, a bare AttributeError / KeyError / TypeError
    (lambda d: d["data"][0]["questions"].__setitem__(1, "Where did she go?"), "story story-a turn 2"),
    (lambda d: d["data"][0]["answers"][0].pop("input_text"), "story story-a turn 1.*input_text"),
    (lambda d: d["data"][1]["questions"][0].pop("input_text"), "story story-b turn 1.*input_text"),
    (lambda d: d["data"][1]["answers"][0].update(input_text=None), "story story-b turn 1.*not a string"),
])
def test_reader_names_the_problem(tmp_path, mutate, message) -> None:
    from gpt2lib.tasks.coqa import read_coqa

    doc = json.loads(json.dumps(OFFICIAL))
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_coqa(path)
    assert str(path) in str(info.value)


def test_run_on_the_file_scores_transformers_greedy_answers(tmp_path, coqa_file) -> None:
    from gpt2lib.tasks.coqa import coqa_prompt, read_coqa, run, turn_score

    tok = get_gpt2_tokenizer()
    hf, ours = make_pair(tmp_path / "hf", block_size=256)
    f1 = em = 0.0
    turns = read_coqa(coqa_file)
    for t in turns:
        ids = tok.encode(coqa_prompt(t))
        out = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, pad_token_id=EOT)[0, len(ids):]
        out = out.tolist()
        answer = tok.decode(out[:out.index(EOT)] if EOT in out else out).split("\n")[0].strip()
        s = turn_score(answer, t.answers)
        f1, em = f1 + s["f1"], em + s["em"]
    res = run(ours, tok, path=coqa_file, max_new_tokens=8)
    assert res.n_examples == 3
    assert res.metrics == pytest.approx({"f1": 100 * f1 / 3, "em": 100 * em / 3})
    assert run(ours, tok, path=coqa_file, limit=1, max_new_tokens=8).n_examples == 1


def test_coqa_dev_is_registered_with_its_published_checksum() -> None:
    """coqa-dev-v1.0.json: the URL of the CoQA site, size and sha256 as published in the Hugging Face
    `datasets` registry (datasets/coqa/dataset_infos.json)."""
    from gpt2lib.datasets import info

    entry = info("coqa-dev")
    assert entry.url == "https://nlp.stanford.edu/data/coqa/coqa-dev-v1.0.json"
    assert entry.size == 9_090_845
    assert not entry.in_mirror and entry.path == "coqa/coqa-dev-v1.0.json"
    assert entry.sha256 == "dfa367a9733ce53222918d0231d9b3bedc2b8ee831a2845f62dfc70701f2540a"
