"""The §2.1 pipeline on partitions: serially, on a local process pool, or on a Dask distributed cluster.

GPT-2's WebText is "the text subset of these 45 million links ... slightly over 8 million documents"
(Radford et al. 2019, §2.1): more than one process should handle. :func:`run_engine` runs the *same*
stage list as :func:`gpt2lib.pipeline.run_pipeline` on partitions of the input and returns the same
items and per-stage reports, whatever the engine and the number of partitions:

- pure stages (:class:`~gpt2lib.pipeline.Stage`): one task per partition (``apply_stages``);
- group stages (de-duplication, :class:`~gpt2lib.pipeline.GroupStage`), as map-reduce:

  1. map: each partition emits ``(key, (partition, index))`` for its items (a URL, a text hash, the
     MinHash LSH band values) into ``R`` buckets by a stable hash of the key;
  2. shuffle + reduce: task ``r`` gathers bucket ``r`` of every partition, groups by key and returns
     the candidate pairs (items sharing a key);
  3. verify (near dedup only): the partitions holding candidates send their sketches (MinHash
     signatures) for those items alone, and each pair is checked with ``stage.similar``;
  4. resolve: union-find over the verified pairs in the driver (only duplicates travel there); each
     connected component keeps its lowest ``(partition, index)``, i.e. its first item in input order;
  5. filter: each partition drops its own losers.

Engines (:func:`get_engine`): ``"serial"`` (this process), ``"process"`` (a local
``ProcessPoolExecutor``; a crashed worker breaks the pool, which is rebuilt and the unfinished tasks
resubmitted) and ``"dask"`` (``distributed``: a ``LocalCluster`` of ``workers`` processes, or the
scheduler at ``address`` / ``$GPT2LIB_ENGINE_ADDRESS``; a task whose worker dies is rerun elsewhere
by the scheduler, and a task that raises is retried ``retries`` times). Dask is an optional extra
(``pip install "gpt2lib[scale]"``), imported only when asked for.

Tokenization (:func:`prepare_on_engine`) and BPE pre-token counting (:func:`count_pretokens_on_engine`)
are maps over the same partitions, reduced in the driver.
"""
from __future__ import annotations

import contextlib
import logging
import operator
import os
import signal
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from multiprocessing import resource_tracker
from typing import Any, Callable, Iterable, Sequence

from gpt2lib.bpe import ENDOFTEXT, GPT2_SPLIT_PATTERN, count_pretokens, train_from_counts
from gpt2lib.data import prepare
from gpt2lib.errors import GPT2LibError, MissingPackageError
from gpt2lib.pipeline import (GroupStage, Stage, StageReport, apply_stages, candidate_pairs, components_drops,
                              stable_bucket)

__all__ = ["EngineError", "SerialEngine", "ProcessEngine", "DaskEngine", "get_engine", "run_engine", "EngineRun",
           "split_evenly", "prepare_on_engine", "count_pretokens_on_engine", "train_bpe_on_engine", "ENGINES",
           "ADDRESS_ENV"]

ENGINES = ("serial", "process", "dask")
ADDRESS_ENV = "GPT2LIB_ENGINE_ADDRESS"
CONNECT_TIMEOUT = 30  # seconds to reach a Dask scheduler
WORKER_TIMEOUT = 60  # seconds a Dask scheduler may take to have a first worker
WORKER_TIMEOUT_ENV = "GPT2LIB_ENGINE_WORKER_TIMEOUT"


class EngineError(GPT2LibError, RuntimeError):
    """An engine that cannot run the work: no scheduler, no workers, a missing package, workers that died."""

# ------------------------------------------------------------------------------ engines
# An engine maps a function over lists of "handles" (values here, futures on Dask) elementwise.


class SerialEngine:
    """Everything in this process: the reference the other engines are tested against."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable, *lists: Sequence) -> list:
        return [fn(*args) for args in zip(*lists)]

    def submit(self, fn: Callable, *args) -> Any:
        return fn(*args)

    def scatter(self, values: list) -> list:
        return list(values)

    def gather(self, handles: list) -> list:
        return list(handles)

    def pick(self, handles: list, i: int) -> list:
        """Element ``i`` of each handle's (tuple) value."""
        return self.map(operator.itemgetter(i), handles)

    def lengths(self, handles: list) -> list[int]:
        return [len(h) for h in handles]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ProcessEngine(SerialEngine):
    """A local process pool. Values live in the driver and travel to a worker for each task."""

    name = "process"

    def __init__(self, workers: int = 2, retries: int = 2):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.retries = workers, retries
        self.pool = ProcessPoolExecutor(workers)

    def map(self, fn: Callable, *lists: Sequence) -> list:
        args = list(zip(*lists))
        results: dict[int, Any] = {}
        for attempt in range(self.retries + 1):
            todo = [i for i in range(len(args)) if i not in results]
            if not todo:
                break
            futures = {i: self.pool.submit(fn, *args[i]) for i in todo}
            error = None
            for i, f in futures.items():
                try:
                    results[i] = f.result()
                except BrokenProcessPool as e:  # a worker died (killed, out of memory): new pool, resubmit
                    error = e
                except Exception as e:  # noqa: BLE001 - retried, then raised
                    error = e
            if error is not None and isinstance(error, BrokenProcessPool):
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = ProcessPoolExecutor(self.workers)
            if error is not None and attempt == self.retries:
                raise error
        return [results[i] for i in range(len(args))]

    def submit(self, fn: Callable, *args) -> Any:
        return self.map(fn, *[[a] for a in args])[0]

    def pick(self, handles: list, i: int) -> list:  # values are here: no task needed
        return [h[i] for h in handles]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class DaskEngine(SerialEngine):
    """Dask distributed: a local cluster of ``workers`` processes (one thread each), or the running
    scheduler at ``address`` (``tcp://host:8786``). Handles are futures: data stays on the workers."""

    name = "dask"

    def __init__(self, workers: int = 2, address: str | None = None, retries: int = 2,
                 worker_timeout: float | None = None):
        try:
            from distributed import Client, LocalCluster  # optional: gpt2lib[scale]
        except ImportError:
            raise MissingPackageError('engine "dask" needs Dask distributed, which is not installed: '
                              'pip install "gpt2lib[scale]"') from None
        self.retries, self._cluster = retries, None
        if address:
            wait = worker_timeout if worker_timeout is not None else float(os.environ.get(WORKER_TIMEOUT_ENV,
                                                                                          WORKER_TIMEOUT))
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise EngineError(f"could not reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s "
                                  f"({type(e).__name__}); is it running?") from None
            try:  # a scheduler with no workers would take the tasks and wait forever
                self.client.wait_for_workers(1, timeout=wait)
            except (OSError, TimeoutError):
                self.client.close()
                raise EngineError(f"the Dask scheduler at {address} has no workers (waited {wait:g} s, "
                                  f"${WORKER_TIMEOUT_ENV}); start some with: dask worker {address}") from None
            self.workers = len(self.client.scheduler_info()["workers"])
        else:
            if workers < 1:
                raise ValueError(f"workers must be >= 1, got {workers}")
            self.client = None
            try:
                with _sigint_held():  # the cluster's threads and worker processes ignore Ctrl-C: the driver closes them
                    self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=":0", silence_logs=logging.ERROR)  # any free port
                    self.client = Client(self._cluster)
            except BaseException as e:  # e.g. a Ctrl-C held back during the start: close what was started, quietly
                self.close(interrupted=isinstance(e, KeyboardInterrupt))
                raise
            self.workers = workers
        _quiet_cancelled_gathers()

    def map(self, fn: Callable, *lists: Sequence) -> list:
        if not lists or not len(lists[0]):
            return []
        return self.client.map(fn, *lists, pure=False, retries=self.retries)

    def submit(self, fn: Callable, *args) -> Any:
        return self.client.submit(fn, *args, pure=False, retries=self.retries)

    def scatter(self, values: list) -> list:
        # tasks, not client.scatter: a task's result lost with its worker is recomputed, scattered data is not
        return self.map(list, list(values))

    def gather(self, handles: list) -> list:
        from distributed import KilledWorker  # optional: gpt2lib[scale] (present once a client runs)

        try:
            return self.client.gather(list(handles))
        except KilledWorker as e:
            raise EngineError(f"Dask gave up on a task after its workers died {self.retries + 1} time(s) ({e}); "
                              f"check the workers' memory and logs") from None

    def lengths(self, handles: list) -> list[int]:
        return self.gather(self.map(len, handles))

    def close(self, interrupted: bool = False) -> None:
        """Close the client, then the local cluster. ``interrupted`` (a Ctrl-C is on its way out, see
        ``__exit__``): first quiet Dask's loggers here and on the workers, whose heartbeats and comms then fail
        one traceback each as the cluster goes down under running tasks; the interruption is reported once."""
        levels = _quiet_distributed_logs() if interrupted else {}
        try:
            if interrupted and self.client is not None and self._cluster is not None:  # our workers: quiet them
                with contextlib.suppress(Exception):  # (Client.run, but bounded: a stuck worker must not hang Ctrl-C)
                    self.client.sync(self.client._run, _quiet_distributed_logs, callback_timeout=5)
            if self.client is not None:
                self.client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)

    def __exit__(self, exc_type, *exc) -> None:
        self.close(interrupted=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))


def _quiet_distributed_logs() -> dict[str, int]:
    """Only critical records from Dask's loggers in this process (also run on each worker); returns the
    levels they had."""
    levels = {}
    for name in ["distributed", *[n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]]:
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return levels


@contextlib.contextmanager
def _sigint_held():
    """Block SIGINT in this (the main) thread while a Dask ``LocalCluster`` starts: the threads it starts, and
    the worker processes they spawn, inherit the block. A terminal's Ctrl-C goes to every process of its group,
    and a worker that took it printed a ``KeyboardInterrupt`` traceback of its own; now the driver alone gets
    it and closes the cluster. A Ctrl-C pressed during the start is held, then raised when the block ends."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()  # its first start unblocks SIGINT in the calling thread: start it first
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _CancelledGathers(logging.Filter):
    """Drop asyncio's "Task exception was never retrieved" records of Dask's ``AllExit``: the gather tasks a
    Ctrl-C left waiting end so when the client closes (one traceback each); the interruption is reported once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (type(exc).__name__ == "AllExit" and type(exc).__module__.startswith("distributed"))


def _quiet_cancelled_gathers() -> None:
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _CancelledGathers) for f in log.filters):
        log.addFilter(_CancelledGathers())


def get_engine(name: str = "serial", workers: int = 2, address: str | None = None, retries: int = 2):
    """``"serial"`` | ``"process"`` | ``"dask"``. For Dask, ``address`` (or ``$GPT2LIB_ENGINE_ADDRESS``)
    connects to a running cluster instead of starting a local one."""
    if name == "serial":
        return SerialEngine()
    if name == "process":
        return ProcessEngine(workers, retries)
    if name == "dask":
        return DaskEngine(workers, address or os.environ.get(ADDRESS_ENV) or None, retries)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


# ------------------------------------------------------------------------------ the pipeline on partitions


def split_evenly(items: Sequence, n: int) -> list[list]:
    """``n`` contiguous partitions whose sizes differ by at most one (some empty if ``n > len(items)``)."""
    if n < 1:
        raise ValueError(f"partitions must be >= 1, got {n}")
    q, r = divmod(len(items), n)
    bounds = [k * q + min(k, r) for k in range(n + 1)]
    return [list(items[bounds[k]:bounds[k + 1]]) for k in range(n)]


@dataclass
class EngineRun:
    """The surviving items (input order), one report per stage, and how the run was cut."""

    items: list
    reports: list[StageReport]
    partitions: int
    engine: str

    def summary(self) -> str:
        return "\n".join(str(r) for r in self.reports)


def _read(reader: Callable | None, source) -> list:
    return list(reader(source) if reader is not None else source)


def _emit(stage: GroupStage, n_buckets: int, part: list, p: int) -> tuple:
    buckets: list[list] = [[] for _ in range(n_buckets)]
    for i, item in enumerate(part):
        for key in stage.keys(item):
            buckets[stable_bucket(key, n_buckets)].append((key, (p, i)))
    return tuple(buckets)


def _reduce(stage: GroupStage, *buckets: list) -> list:
    groups: dict[bytes, list] = {}
    for bucket in buckets:
        for key, ident in bucket:
            groups.setdefault(key, []).append(ident)
    return [pair for ids in groups.values() for pair in candidate_pairs(stage, ids)]


def _sketches(stage: GroupStage, part: list, wanted: list[int]) -> dict:
    return {i: stage.sketch(part[i]) for i in wanted}


def _drop_indices(part: list, drops: list[int]) -> list:
    gone = set(drops)
    return [x for i, x in enumerate(part) if i not in gone]


def _group_on_engine(engine, stage: GroupStage, parts: list) -> tuple[list, StageReport]:
    n = len(parts)
    buckets = engine.map(partial(_emit, stage, n), parts, range(n))
    reduced = [engine.submit(partial(_reduce, stage), *engine.pick(buckets, r)) for r in range(n)]
    sizes = engine.lengths(parts)
    pairs = {pair for chunk in engine.gather(reduced) for pair in chunk}
    if stage.verify and pairs:
        wanted: list[set[int]] = [set() for _ in range(n)]
        for pair in pairs:
            for p, i in pair:
                wanted[p].add(i)
        got = engine.gather(engine.map(partial(_sketches, stage), parts, [sorted(w) for w in wanted]))
        sketch = {(p, i): s for p, d in enumerate(got) for i, s in d.items()}
        pairs = {(a, b) for a, b in pairs if stage.similar(sketch[a], sketch[b])}
    drops = components_drops(pairs)
    by_part: list[list[int]] = [[] for _ in range(n)]
    for p, i in sorted(drops):
        by_part[p].append(i)
    seen = sum(sizes)
    report = StageReport(stage.name, seen=seen, kept=seen - len(drops))
    if drops:
        report.dropped[stage.reason] = len(drops)
    return engine.map(_drop_indices, parts, by_part), report


def _segments(stages: Sequence) -> list[tuple[int, int]]:
    """Runs [start, end) of consecutive pure stages; each group stage alone."""
    segs: list[tuple[int, int]] = []
    for i, s in enumerate(stages):
        if isinstance(s, GroupStage):
            segs.append((i, i + 1))
        elif not s.pure:
            raise ValueError(f"stage {s.name!r} is a stateful function (pure=False), which only a serial "
                             "run_pipeline can run; write it as a gpt2lib.pipeline.GroupStage to run it on an engine")
        elif segs and not isinstance(stages[segs[-1][0]], GroupStage):
            segs[-1] = (segs[-1][0], i + 1)
        else:
            segs.append((i, i + 1))
    return segs


def run_engine(stages: Sequence[Stage | GroupStage], items: Iterable | None = None, *, engine=None,
               partitions: int = 2, sources: Sequence | None = None, reader: Callable | None = None,
               progress: Callable[[str], None] | None = None) -> EngineRun:
    """Run ``stages`` on ``engine`` (default serial) over ``items`` cut into ``partitions`` contiguous
    partitions, or over ``sources`` (one partition each, read on the workers by ``reader(source)``, a
    picklable function such as :func:`gpt2lib.webtext.read_lines`). Output and reports equal
    ``run_pipeline(stages, items)``'s. ``progress(message)`` is called after each stage."""
    engine = engine or SerialEngine()
    _segments(stages)  # refuse a stateful stage before any work
    if sources is not None:
        parts = engine.map(partial(_read, reader), list(sources))
    else:
        parts = engine.scatter(split_evenly(list(items if items is not None else []), partitions))
    n = len(parts)
    reports = [StageReport(s.name) for s in stages]
    pending: list[tuple[int, int, list]] = []  # pure-segment reports, gathered at the end
    for start, end in _segments(stages):
        if isinstance(stages[start], GroupStage):
            for s, e, handles in pending:  # a group stage waits for what is before it anyway
                for per_part in engine.gather(handles):
                    for total, rep in zip(reports[s:e], per_part):
                        total.add(rep)
            pending = []
            parts, rep = _group_on_engine(engine, stages[start], parts)
            reports[start].add(rep)
        else:
            fns = [s.fn for s in stages[start:end]]
            names = [s.name for s in stages[start:end]]
            out = engine.map(partial(apply_stages, fns, names), parts)
            parts = engine.pick(out, 0)
            pending.append((start, end, engine.pick(out, 1)))
        if progress is not None and isinstance(stages[start], GroupStage):
            progress(str(reports[start]))
    for s, e, handles in pending:
        for per_part in engine.gather(handles):
            for total, rep in zip(reports[s:e], per_part):
                total.add(rep)
    items_out = [x for part in engine.gather(parts) for x in part]
    return EngineRun(items_out, reports, n, engine.name)


# ------------------------------------------------------------------------------ tokenization, BPE counting


def _encode_texts(tokenizer, texts: list[str]) -> list:
    return tokenizer.encode_batch(texts)


class _Pretokenized:
    """A tokenizer whose ``encode_batch`` returns ids computed on the engine (looked up by text), so
    :func:`gpt2lib.data.prepare` writes the shards exactly as it would have; everything else is the
    real tokenizer's."""

    def __init__(self, tokenizer, ids: dict[str, list[int]]):
        self._tokenizer, self._ids = tokenizer, ids

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def encode_batch(self, texts):
        return [self._ids[t] if t in self._ids else self._tokenizer.encode(t) for t in texts]


def prepare_on_engine(engine, texts: Sequence[str], out_dir, tokenizer, *, partitions: int | None = None,
                      **prepare_kwargs) -> dict:
    """:func:`gpt2lib.data.prepare` with the tokenization done on ``engine`` (one task per partition);
    shard bytes and metadata equal a serial ``prepare``'s."""
    texts = list(texts)
    parts = split_evenly(texts, partitions or max(1, 2 * engine.workers))
    encoded = engine.gather(engine.map(partial(_encode_texts, tokenizer), engine.scatter(parts)))
    ids = {t: e for part, enc in zip(parts, encoded) for t, e in zip(part, enc)}
    prepare_kwargs.setdefault("progress", False)
    return prepare(texts, out_dir, _Pretokenized(tokenizer, ids), num_workers=1, **prepare_kwargs)


def _count_part(count_fn: Callable, texts: list[str]) -> Counter:
    return count_fn(texts)


def count_pretokens_on_engine(engine, texts: Sequence[str], count_fn: Callable[[list[str]], Counter], *,
                              partitions: int | None = None) -> Counter:
    """Map ``count_fn`` (a picklable function of a list of texts -> Counter of pre-tokens, e.g. a
    ``functools.partial`` of :func:`gpt2lib.bpe.count_pretokens`) over partitions; sum the Counters."""
    parts = split_evenly(list(texts), partitions or max(1, 2 * engine.workers))
    total: Counter = Counter()
    for c in engine.gather(engine.map(partial(_count_part, count_fn), engine.scatter(parts))):
        total.update(c)
    return total


def train_bpe_on_engine(engine, texts: Sequence[str], vocab_size: int, *, partitions: int | None = None,
                        **train_kwargs):
    """GPT-2 §2.2 BPE training with the pre-token counting (the map-reduce part) on ``engine``: each
    partition runs :func:`gpt2lib.bpe.count_pretokens`, the driver sums the counts and learns the merges
    (:func:`gpt2lib.bpe.train_from_counts`). ``train_kwargs``: ``special_tokens``, ``tie_break``,
    ``pattern``, ``name``. Equals ``BytePairTokenizer(pattern=p).train("<|endoftext|>".join(texts), v)``."""
    pattern = train_kwargs.get("pattern", GPT2_SPLIT_PATTERN)
    specials = tuple(train_kwargs.get("special_tokens", (ENDOFTEXT,)))
    counts = count_pretokens_on_engine(engine, texts, partial(count_pretokens, pattern=pattern,
                                                              special_tokens=specials), partitions=partitions)
    return train_from_counts(counts, vocab_size, **train_kwargs)
