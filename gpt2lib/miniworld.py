"""A miniature "web" in which tasks occur as naturally occurring demonstrations (GPT-2 §1-§3 in miniature).

The paper's thesis (§1, §2): a language model trained only to predict the next token, on text in which tasks
happen to be demonstrated in passing, learns to perform those tasks zero-shot, and better the more capacity it
has (Figure 1). Its Table 1 shows such demonstrations found in WebText, e.g. "I'm not the cleverest man in the
world, but like they say in French: Je ne suis pas un imbecile [I'm not a fool]."

:func:`make_world` writes a small, seeded, deterministic corpus of short documents ("web pages") of four kinds,
each of which, in a fraction ``demo_rate`` of the documents, carries a demonstration of a task:

``translate``  A traveller's note that names a thing and, in passing, its name in Vellish, a toy language with
               rules (its own words, the noun before the adjective): ``a red fox, or "fosk miro" in Vellish``.
``story``      A short story about two people going to two places, later followed by a question about it
               and its answer: ``Where did Mira go? Mira went to the mill.``
``count``      A sentence with a small sum in it: ``Kalo had 3 apples and Mira gave Kalo 4 more, which made 7 apples
               in all.``
``gist``       A paragraph about someone's day followed by ``In short:`` and its gist (``Kalo baked bread.``).

The **control** world (``control=True``) is the same text with the demonstrations left out: the same documents,
sentence for sentence, minus the sentence (or clause) that shows the task being done.

:func:`held_out` makes the evaluation instances: new people (names that never occur in the corpus) and new
phrases to translate (adjective-noun pairs that never occur), each a :class:`Instance` whose ``prompt`` is the
task written in natural language with no example (zero-shot, §3), whose ``answer`` is the right continuation and
whose ``choices`` are it and three wrong ones (so chance is 1/4). :func:`evaluate_zero_shot` scores a model.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

from gpt2lib.evaluate import score_continuations

__all__ = ["WorldConfig", "World", "Instance", "TaskScore", "make_world", "held_out", "with_demonstration", "evaluate_zero_shot", "occurrences", "TASKS", "PLACES", "ACTIVITIES"]

TASKS = ("translate", "story", "count", "gist")

_SYL = ["ka", "lo", "mi", "ra", "to", "ne", "su", "vi", "da", "ri", "po", "fe", "ba", "ju"]
_VSYL = ["zu", "qe", "xo", "gy", "wa", "ho", "ek", "ul", "yn", "iz", "ob", "ax"]  # Vellish sounds
NOUNS = ["fox", "boat", "house", "tree", "horse", "cup", "bird", "lamp"]
ADJS = ["red", "old", "small", "big", "green", "white"]
PLACES = ["mill", "river", "market", "church", "forest", "harbour", "school", "bakery", "bridge", "farm"]
OBJECTS = ["apples", "coins", "books", "eggs", "shells", "pens"]
# activity -> (gist, cue sentences that show it without naming it)
ACTIVITIES = {
    "baked bread": ["{n} lit the oven before dawn.", "The dough rose slowly in its bowl.",
                    "Soon the street smelled of warm loaves.", "{n} dusted the table with flour."],
    "caught fish": ["{n} rowed out onto the lake.", "The line pulled hard in the water.",
                    "By noon the basket was full of trout.", "{n} baited the hook with a worm."],
    "fixed the roof": ["{n} climbed the ladder with a hammer.", "Rain had come through the tiles.",
                       "Nail by nail the holes were closed.", "{n} carried new tiles up to the top."],
    "planted a garden": ["{n} dug the soil behind the house.", "The seeds went in, row after row.",
                         "Water was poured over the beds.", "{n} pulled the weeds by hand."],
    "painted a wall": ["{n} opened a tin of blue paint.", "The brush went up and down.",
                       "By evening the wall was bright and clean.", "{n} let the first coat dry."],
    "sang a song": ["{n} stood up in front of the crowd.", "A clear voice filled the hall.",
                    "Everyone knew the words of the chorus.", "{n} held the last note for a long time."],
}
_FILLER = ["The weather was mild that week.", "It was a quiet day in the village.", "A dog barked somewhere.",
           "The sky was grey over the hills.", "Nobody was in a hurry.", "The bells rang at noon.",
           "The wind came from the sea.", "Later it began to rain.", "The road was dusty and long.",
           "Most shops closed early."]


@dataclass(frozen=True)
class WorldConfig:
    """The knobs of the world (tuned so that a ladder of small models spans the interesting range)."""
    n_docs: int = 10000
    demo_rate: float = 1.0          # fraction of each kind's documents that carry the demonstration
    kinds: tuple[str, ...] = TASKS  # document kinds, drawn in equal proportion
    n_heldout_names: int = 24       # of the 14*14 two-syllable names, these never occur in the corpus
    n_heldout_pairs: int = 12       # of the 6*8 adjective-noun pairs, these are never translated in it
    seed: int = 0

    def to_dict(self) -> dict:
        return {"n_docs": self.n_docs, "demo_rate": self.demo_rate, "kinds": list(self.kinds),
                "n_heldout_names": self.n_heldout_names, "n_heldout_pairs": self.n_heldout_pairs, "seed": self.seed}


@dataclass(frozen=True)
class Instance:
    """One zero-shot evaluation item: the model reads ``prompt`` and should continue with ``answer``, which is
    ``choices[label]``; the other choices are wrong continuations of the same form."""
    task: str
    prompt: str
    answer: str
    choices: tuple[str, ...]
    label: int


@dataclass
class World:
    """A generated corpus and the vocabulary it was drawn from (``train_names`` occur in it,
    ``heldout_names`` and ``heldout_pairs`` never do)."""
    config: WorldConfig
    control: bool
    documents: list[str]
    vellish: dict[str, str]
    train_names: list[str]
    heldout_names: list[str]
    heldout_pairs: list[tuple[str, str]]
    kinds: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(self.documents)


def _lexicon(seed: int) -> tuple[dict[str, str], list[str]]:
    """Vellish (a rule-made toy language: two Vellish syllables per word) and all two-syllable names."""
    rng = random.Random(f"lexicon-{seed}")
    words = [a + b for a in _VSYL for b in _VSYL if a != b]
    rng.shuffle(words)
    vellish = dict(zip(NOUNS + ADJS, words))
    names = sorted({(a + b).capitalize() for a in _SYL for b in _SYL if a != b})
    rng.shuffle(names)
    return vellish, names


def to_vellish(vellish: dict[str, str], adj: str, noun: str) -> str:
    """The Vellish for "<adj> <noun>": the noun first, then the adjective (the language's one word-order rule)."""
    return f"{vellish[noun]} {vellish[adj]}"


def _translate_doc(rng, name, vellish, pairs):
    adj, noun = rng.choice(pairs)
    v = to_vellish(vellish, adj, noun)
    intro = rng.choice([f"Last spring {name} travelled to the valley of Vell.", f"{name} wrote home from Vell.",
                        f"This is what {name} saw on a trip to Vell."])
    thing = f"At the market there was {_a(adj)} {adj} {noun}"
    demo = rng.choice([f', or "{v}" in Vellish.', f', which in Vellish is called "{v}".',
                       f'. In Vellish, {_a(adj)} {adj} {noun} is called "{v}".'])
    return [(intro, intro), (thing + demo, thing + "."), *_fillers(rng, 1)]


def _story_doc(rng, names, places):
    who = rng.sample(names, 2)
    where = rng.sample(places, 2)
    story = [(s, s) for s in (f"{n} went to the {p}." for n, p in zip(who, where))]
    i = rng.randrange(2)
    qa = f"Where did {who[i]} go? {who[i]} went to the {where[i]}."
    return [*story, *_fillers(rng, 1), (qa, "")]


def _count_doc(rng, names):
    a, b = rng.sample(names, 2)
    x, y, obj = rng.randint(2, 6), rng.randint(2, 6), rng.choice(OBJECTS)
    head = f"{a} had {x} {obj} and {b} gave {a} {y} more"
    return [*_fillers(rng, 1), (f"{head}, which made {x + y} {obj} in all.", head + ".")]


def _gist_doc(rng, name):
    act = rng.choice(list(ACTIVITIES))
    cues = [c.format(n=name) for c in rng.sample(ACTIVITIES[act], 3)]
    body = [(c, c) for c in cues]
    body.insert(rng.randrange(4), _fillers(rng, 1)[0])
    gist = f"In short: {name} {act}."
    return [(f"{name} had a busy day.", f"{name} had a busy day."), *body, (gist, "")]


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fillers(rng, k):
    return [(s, s) for s in rng.sample(_FILLER, k)]


def _heldout_split(config: WorldConfig):
    vellish, names = _lexicon(config.seed)
    heldout_names = sorted(names[:config.n_heldout_names])
    rng = random.Random(f"pairs-{config.seed}")
    pairs = [(a, n) for a in ADJS for n in NOUNS]
    rng.shuffle(pairs)
    heldout_pairs = sorted(pairs[:config.n_heldout_pairs])
    return vellish, sorted(names[config.n_heldout_names:]), heldout_names, sorted(pairs[config.n_heldout_pairs:]), \
        heldout_pairs


def make_world(config: WorldConfig = WorldConfig(), *, control: bool = False) -> World:
    """Generate the corpus (deterministic for a config). ``control=True`` gives the same documents with every
    demonstration removed: the same random draws, the demonstrating sentence or clause left out."""
    if not 0.0 <= config.demo_rate <= 1.0:
        raise ValueError(f"demo_rate must be in [0, 1], got {config.demo_rate}")
    unknown = set(config.kinds) - set(TASKS)
    if unknown or not config.kinds:
        raise ValueError(f"unknown document kind(s) {sorted(unknown)}; known: {', '.join(TASKS)}")
    vellish, names, heldout_names, pairs, heldout_pairs = _heldout_split(config)
    rng = random.Random(f"world-{config.seed}")
    docs, kinds = [], []
    for _ in range(config.n_docs):
        kind = rng.choice(config.kinds)
        name = rng.choice(names)
        if kind == "translate":
            sents = _translate_doc(rng, name, vellish, pairs)
        elif kind == "story":
            sents = _story_doc(rng, names, PLACES)
        elif kind == "count":
            sents = _count_doc(rng, names)
        else:
            sents = _gist_doc(rng, name)
        demo = rng.random() < config.demo_rate and not control
        text = " ".join(w if demo else c for w, c in sents if (w if demo else c))
        docs.append(text)
        kinds.append(kind)
    return World(config, control, docs, vellish, names, heldout_names, heldout_pairs, kinds)


def _choices(rng, right: str, wrong: list[str]) -> tuple[tuple[str, ...], int]:
    options = [right, *rng.sample(wrong, 3)]
    rng.shuffle(options)
    return tuple(options), options.index(right)


def held_out(world: World, n_per_task: int = 50, seed: int = 1) -> list[Instance]:
    """``n_per_task`` zero-shot instances of each task, built only from held-out names and phrases.

    The prompts are the tasks' natural wording in the corpus, cut just before the answer (§3: the task is given
    in the prompt alone; no example of it is included). Choices are the answer and three wrong continuations.
    """
    rng = random.Random(f"heldout-{world.config.seed}-{seed}")
    names, out = world.heldout_names, []
    for _ in range(n_per_task):
        adj, noun = rng.choice(world.heldout_pairs)
        right = to_vellish(world.vellish, adj, noun)
        wrong = [to_vellish(world.vellish, adj, n) for n in NOUNS if n != noun][:3] + \
                [to_vellish(world.vellish, a, noun) for a in ADJS if a != adj][:3] + \
                [f"{world.vellish[adj]} {world.vellish[noun]}"]  # the words in English order
        # no closing quote: in the corpus it is merged with what follows it ('".'), so it would be a token that
        # never follows a Vellish word there
        choices, label = _choices(rng, right, wrong)
        out.append(Instance("translate", f'In Vellish, {_a(adj)} {adj} {noun} is called "', right, choices, label))
    for _ in range(n_per_task):
        who, where = rng.sample(names, 2), rng.sample(PLACES, 4)
        i = rng.randrange(2)
        story = " ".join(f"{n} went to the {p}." for n, p in zip(who, where))  # where[2:]: two places not in it
        answer = f" {where[i]}."
        choices, label = _choices(rng, answer, [f" {p}." for p in where if p != where[i]])
        out.append(Instance("story", f"{story} Where did {who[i]} go? {who[i]} went to the", answer, choices, label))
    for _ in range(n_per_task):
        a, b = rng.sample(names, 2)
        x, y, obj = rng.randint(2, 6), rng.randint(2, 6), rng.choice(OBJECTS)
        s = x + y
        choices, label = _choices(rng, f" {s}", [f" {v}" for v in (s - 2, s - 1, s + 1, s + 2)])
        out.append(Instance("count", f"{a} had {x} {obj} and {b} gave {a} {y} more, which made", f" {s}",
                            choices, label))
    for _ in range(n_per_task):
        name, act = rng.choice(names), rng.choice(list(ACTIVITIES))
        cues = [c.format(n=name) for c in rng.sample(ACTIVITIES[act], 3)]
        prompt = " ".join([f"{name} had a busy day.", *cues, f"In short: {name}"])
        choices, label = _choices(rng, f" {act}.", [f" {a}." for a in ACTIVITIES if a != act])
        out.append(Instance("gist", prompt, f" {act}.", choices, label))
    return out


# What ends a solved example's sentence after its answer (a translation prompt stops at the opening quote).
_CLOSE = {"translate": '".'}


def with_demonstration(instances: list[Instance], seed: int = 0) -> list[Instance]:
    """The one-shot version of ``instances``: each prompt is preceded by one solved example of the same task and a
    blank line, as §3.7 conditions translation on "example pairs". The example is another instance's prompt and
    answer, its sentence closed; its answer differs from this one's, so it cannot simply be copied. The answer and
    choices are unchanged."""
    rng = random.Random(f"one-shot-{seed}")
    by_task: dict[str, list[Instance]] = {}
    for d in instances:
        by_task.setdefault(d.task, []).append(d)
    out = []
    for inst in instances:
        pool = [d for d in by_task[inst.task] if d.answer != inst.answer]
        if not pool:
            raise ValueError(f"no other {inst.task!r} instance with another answer to show before {inst.prompt!r}")
        demo = rng.choice(pool)
        solved = demo.prompt + demo.answer + _CLOSE.get(demo.task, "")
        out.append(replace(inst, prompt=f"{solved}\n\n{inst.prompt}"))
    return out


def occurrences(world: World, instance_text: str) -> int:
    """How often ``instance_text`` occurs in the corpus as whole words (the search the tests run)."""
    return len(re.findall(rf"(?<!\w){re.escape(instance_text)}(?!\w)", world.text))


# --------------------------------------------------------------------------------------------------
# Zero-shot evaluation (§3): the unchanged model, the task given only in the prompt.


@dataclass
class TaskScore:
    """A model's zero-shot result on one task's held-out instances.

    ``accuracy``: the right choice has the highest log p(choice | prompt) (ranking, as §3 scores CBT and
    Winograd); ``greedy``: greedy decoding from the prompt produces exactly the answer (as §3 scores LAMBADA);
    ``answer_nll``: the supervised loss, -log p(answer | prompt) per answer token in nats (§2: the supervised
    objective is the unsupervised one evaluated on the output tokens only); ``chance``: 1 / number of choices.
    """
    task: str
    n: int
    accuracy: float
    greedy: float
    answer_nll: float
    chance: float


def evaluate_zero_shot(model, tokenizer, instances: list[Instance], batch_size: int = 32) -> dict[str, TaskScore]:
    """Score ``model`` (any module whose forward maps ids [B, T] to logits, with ``config.block_size``) on
    ``instances``: one :class:`TaskScore` per task, in :data:`TASKS` order."""
    ctx, cont, where = [], [], []
    for k, inst in enumerate(instances):
        p = tokenizer.encode(inst.prompt)
        for j, choice in enumerate(inst.choices):
            full = tokenizer.encode(inst.prompt + choice)
            if full[:len(p)] != p:  # else the choice would be scored after a prompt the model never reads
                raise ValueError(f"the tokens of {inst.prompt!r} are not a prefix of those of it + {choice!r}")
            ctx.append(p)
            cont.append(full[len(p):])
            where.append((k, j))
    scores = score_continuations(model, ctx, cont, batch_size=batch_size, n_vocab=tokenizer.n_vocab,
                                 bos=tokenizer.eot)
    by_inst: dict[int, list] = {}
    for (k, j), s in zip(where, scores):
        by_inst.setdefault(k, []).append(s)
    out = {}
    for task in TASKS:
        ks = [k for k, inst in enumerate(instances) if inst.task == task]
        if not ks:
            continue
        right = [by_inst[k][instances[k].label] for k in ks]
        best = [max(range(len(by_inst[k])), key=lambda j: by_inst[k][j].logprob) for k in ks]
        out[task] = TaskScore(
            task, len(ks),
            accuracy=sum(b == instances[k].label for b, k in zip(best, ks)) / len(ks),
            greedy=sum(s.greedy for s in right) / len(ks),
            answer_nll=-sum(s.logprob for s in right) / sum(s.n_tokens for s in right),
            chance=sum(1 / len(instances[k].choices) for k in ks) / len(ks))
    return out
