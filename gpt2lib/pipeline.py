"""The stage model of the §2.1 pipeline: the types every stage module shares, and the local runner.

GPT-2 §2.1 builds WebText by a chain of filters ("de-duplication and some heuristic based cleaning").
Here a chain is a list of stages of two kinds:

- :class:`Stage`: a name and a function of *one item* returning the (possibly new) item, ``Drop(reason)``
  or ``Keep(item, note)``. It needs nothing but its item, so any engine can map it over partitions.
- :class:`GroupStage`: a stage that needs a global view (de-duplication). It is written as map-reduce:
  ``keys(item)`` emits group keys (a URL, a text hash, MinHash LSH bands), the items sharing a key are
  *candidates*, ``similar`` verifies candidate pairs where keys are only a hint (near dedup), and each
  connected component of verified pairs keeps its lowest item index (the first one in input order) and
  drops the rest. A serial run groups in a dict (:func:`resolve_group`); :mod:`gpt2lib.engine` does the
  same group-by with a shuffle across worker processes, calling the same functions.

This module imports no other gpt2lib module: :mod:`gpt2lib.dedup` and :mod:`gpt2lib.webtext` import it,
so the dependency runs one way.
"""
from __future__ import annotations

import hashlib
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from typing import Any, Callable, Hashable, Iterable, Iterator, NamedTuple, Sequence

__all__ = ["Drop", "Keep", "Stage", "GroupStage", "StageReport", "apply_stages", "run_pipeline", "PipelineRun",
           "resolve_group", "components_drops", "stable_bucket"]


class Drop(NamedTuple):
    """Returned by a stage function to drop the item, with a short reason (a report key)."""

    reason: str


class Keep(NamedTuple):
    """Returned by a stage function to keep ``item`` and count ``note`` in the report."""

    item: Any
    note: str


@dataclass(frozen=True)
class Stage:
    """A named function of one item -> item | Drop | Keep. ``pure`` stages may run in worker processes
    (the function must then be picklable: a top-level function or a ``functools.partial`` of one).
    ``pure=False`` marks a hand-written stateful function: it runs in the parent, in order, serially only."""

    name: str
    fn: Callable[[Any], Any]
    pure: bool = True


class GroupStage:
    """A de-duplication stage as map-reduce (see the module docstring). Subclasses set ``name`` and
    ``reason`` and define :meth:`keys`; near-duplicate stages also set ``verify = True`` and define
    :meth:`sketch` and :meth:`similar`. Instances must be picklable (they travel to workers)."""

    name: str = "group"
    reason: str = "duplicate"
    verify: bool = False  # False: items sharing a key ARE duplicates (exact dedup)
    pure = False  # a barrier: it sees every item before emitting any

    def keys(self, item) -> Iterable[bytes]:
        raise NotImplementedError

    def sketch(self, item) -> Any:
        """What :meth:`similar` compares (computed only for candidates)."""
        return item

    def similar(self, a, b) -> bool:
        return True


@dataclass
class StageReport:
    """What one stage did: items seen and kept, drops by reason, notes on kept items."""

    name: str
    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)

    def add(self, other: "StageReport") -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.notes.update(other.notes)

    def __str__(self) -> str:
        drops = ", ".join(f"{r}: {n}" for r, n in self.dropped.most_common()) or "-"
        return f"{self.name}: kept {self.kept}/{self.seen} (dropped {drops})"


def apply_stages(fns: Sequence[Callable[[Any], Any]], names: Sequence[str], chunk: list) -> tuple[list, list[StageReport]]:
    """Run consecutive stage functions over one chunk (a partition); returns kept items and a report per stage."""
    reports = [StageReport(n) for n in names]
    items = chunk
    for fn, rep in zip(fns, reports):
        out = []
        for item in items:
            rep.seen += 1
            res = fn(item)
            if isinstance(res, Drop):
                rep.dropped[res.reason] += 1
                continue
            if isinstance(res, Keep):
                rep.notes[res.note] += 1
                res = res.item
            rep.kept += 1
            out.append(res)
        items = out
    return items, reports


# ------------------------------------------------------------------------------ group stages (dedup)


def stable_bucket(key: bytes, n: int) -> int:
    """The shuffle bucket of a key, the same in every process (Python's ``hash`` of str is salted)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % n


def candidate_pairs(stage: GroupStage, ids: Sequence[Hashable]) -> list[tuple]:
    """Pairs to link among the ids sharing one key: exact stages link all to the lowest id; verifying
    stages return every pair (lowest first), to be checked with ``stage.similar``."""
    ids = sorted(set(ids))
    if len(ids) < 2:
        return []
    if not stage.verify:
        return [(ids[0], j) for j in ids[1:]]
    return list(combinations(ids, 2))


def components_drops(edges: Iterable[tuple]) -> set:
    """Union-find over ``edges``: every node of a connected component except its lowest id."""
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
    return {x for x in parent if find(x) != x}


def resolve_group(stage: GroupStage, items: Sequence) -> tuple[list, StageReport]:
    """The serial group-by: keys -> dict of candidates -> verified pairs -> components; returns the kept
    items (in order) and the stage's report. :func:`gpt2lib.engine.run_engine` distributes each step."""
    groups: dict[bytes, list[int]] = {}
    for i, item in enumerate(items):
        for k in stage.keys(item):
            groups.setdefault(k, []).append(i)
    pairs = {p for ids in groups.values() for p in candidate_pairs(stage, ids)}
    if stage.verify:
        wanted = {i for p in pairs for i in p}
        sketches = {i: stage.sketch(items[i]) for i in sorted(wanted)}
        pairs = {(a, b) for a, b in pairs if stage.similar(sketches[a], sketches[b])}
    drops = components_drops(pairs)
    report = StageReport(stage.name, seen=len(items), kept=len(items) - len(drops))
    if drops:
        report.dropped[stage.reason] = len(drops)
    return [x for i, x in enumerate(items) if i not in drops], report


# ------------------------------------------------------------------------------ the local runner


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _kind(stage) -> str:
    return "group" if isinstance(stage, GroupStage) else ("pure" if stage.pure else "stateful")


class PipelineRun:
    """Iterate it (once) for the surviving items, lazily; ``reports`` fills in as items flow through.
    A :class:`GroupStage` is a barrier: it reads everything before it before yielding anything."""

    def __init__(self, stages: Sequence[Stage | GroupStage], items: Iterable, workers: int, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.stages = list(stages)
        self.reports = [StageReport(s.name) for s in self.stages]
        self._items, self._workers, self._chunk = items, workers, chunk_size
        self._started = False

    def _segments(self) -> list[tuple[int, int, str]]:
        """Maximal runs [start, end) of stages of the same kind (a group stage is a run of its own)."""
        segs: list[tuple[int, int, str]] = []
        for i, s in enumerate(self.stages):
            kind = _kind(s)
            if segs and segs[-1][2] == kind and kind != "group":
                segs[-1] = (segs[-1][0], i + 1, kind)
            else:
                segs.append((i, i + 1, kind))
        return segs

    def _run_segment(self, chunks: Iterator[list], start: int, end: int, pool) -> Iterator[list]:
        if isinstance(self.stages[start], GroupStage):
            kept, report = resolve_group(self.stages[start], [x for c in chunks for x in c])
            self.reports[start].add(report)
            yield from _chunks(kept, self._chunk)
            return
        fns = [s.fn for s in self.stages[start:end]]
        names = [s.name for s in self.stages[start:end]]
        if pool is None:
            results = (apply_stages(fns, names, c) for c in chunks)
        else:
            results = _ordered_map(pool, partial(apply_stages, fns, names), chunks, window=2 * self._workers)
        for items, reports in results:
            for total, rep in zip(self.reports[start:end], reports):
                total.add(rep)
            yield items

    def __iter__(self) -> Iterator:
        if self._started:
            raise RuntimeError("a PipelineRun can be iterated only once (its reports count one pass)")
        self._started = True
        pool = ProcessPoolExecutor(self._workers) if self._workers > 1 else None
        try:
            chunks: Iterator[list] = _chunks(self._items, self._chunk)
            for start, end, kind in self._segments():
                chunks = self._run_segment(chunks, start, end, pool if kind == "pure" else None)
            for chunk in chunks:
                yield from chunk
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def summary(self) -> str:
        return "\n".join(str(r) for r in self.reports)


def _ordered_map(pool: ProcessPoolExecutor, fn: Callable, items: Iterator, window: int) -> Iterator:
    """Like ``pool.map`` but lazy: at most ``window`` tasks in flight, results in input order."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def run_pipeline(stages: Sequence[Stage | GroupStage], items: Iterable, *, workers: int = 0,
                 chunk_size: int = 256) -> PipelineRun:
    """Compose ``stages`` over ``items`` lazily. ``workers > 1`` runs pure stages in a process pool;
    the output and the reports are identical for any ``workers`` and ``chunk_size``."""
    return PipelineRun(stages, items, workers, chunk_size)
