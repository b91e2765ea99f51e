"""WebText pipeline (GPT-2 §2.1): stage counts, near-duplicate detection, and throughput per stage on engines.

1. The link stages on the Reddit link files (2005-12, 2006-12): kept/dropped per stage and reason,
   and how the surviving links' domains compare with GPT-2's published top-1000 WebText domains.
2. The cleaning stages on the 1408-document WebText sample.
3. Near-duplicate detection (MinHash + LSH) on the WebText sample with planted copies: precision and
   recall against the exact list of planted pairs, per perturbation rate and threshold.
4. Throughput per stage (links, HTML -> text, cleaning, exact dedup, near dedup, tokenization) for
   serial, a process pool and Dask distributed at 1 and 2 workers: median of 3 interleaved repeats, each
   checked equal to the serial output. Engine start-up (Dask; Ray if installed) is timed apart.
5. The per-item costs behind README's cost model for the paper's 45M links / 8M documents.

    GPT2LIB_DATA_MIRROR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_webtext.py [--quick]
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from gpt2lib.dedup import ExactDedup, NearDedup, near_duplicate_pairs, plant_near_duplicates, score_pairs
from gpt2lib.engine import get_engine, prepare_on_engine, run_engine
from gpt2lib.pipeline import Stage, run_pipeline
from gpt2lib.webtext import (Document, Page, clean_stages, compare_domains, domain_counts, html_to_text, link_stages,
                             read_top_domains, read_webtext_sample, reddit_link_lines)


def report_table(title: str, run) -> None:
    print(f"\n### {title}\n\n| stage | seen | kept | dropped (by reason) | notes |\n|---|---|---|---|---|")
    for r in run.reports:
        drops = ", ".join(f"{k}: {v}" for k, v in r.dropped.most_common()) or "-"
        notes = ", ".join(f"{k}: {v}" for k, v in r.notes.most_common()) or "-"
        print(f"| {r.name} | {r.seen} | {r.kept} | {drops} | {notes} |")


def to_page(doc: Document) -> Page:
    body = "".join(f"<p>{p}</p>\n" for p in doc.text.split("\n") if p.strip())
    html = f"<html><body><nav>Home | About | Log in</nav><article>{body}</article><footer>© 2019</footer></body></html>"
    return Page(doc.id, html.encode("utf-8"))


_STARTUP = """
import os, sys, time, psutil
def rss():
    me = psutil.Process(os.getpid())
    return sum(p.memory_info().rss for p in [me] + me.children(recursive=True)) / 2**20
def square(x):
    return x * x
if __name__ == "__main__":
    t0 = time.perf_counter()
    if sys.argv[1] == "dask":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.gather(client.map(abs, range(100)))
        mem = rss()
        client.close(); cluster.close()
    else:
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.get([ray.remote(square).remote(i) for i in range(100)])
        mem = sum(p.memory_info().rss for p in psutil.process_iter()
                  if any(k in " ".join(p.cmdline() or []) for k in ("ray", "raylet", "gcs_server"))) / 2**20
        ray.shutdown()
    print(f"{time.perf_counter() - t0:.1f} {mem:.0f}")
"""


def startup() -> None:
    print("\n### Engine start-up on this machine (2 worker processes, first 100 tasks included)\n")
    print("| engine | start-up s | resident memory MiB (driver + workers + daemons) |\n|---|---|---|")
    for name in ("dask", "ray"):
        try:
            __import__("distributed" if name == "dask" else "ray")
        except ImportError:
            print(f"| {name} | not installed | - |")
            continue
        out = subprocess.run([sys.executable, "-c", _STARTUP, name], capture_output=True, text=True, timeout=300)
        t, mem = out.stdout.split() if out.returncode == 0 else ("failed", "-")
        print(f"| {name} | {t} | {mem} |")


def throughput(links, pages, docs, repeats: int) -> dict[str, float]:
    """Items/s per stage and engine; returns the serial seconds per item of each stage (for the cost model)."""
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    tok = get_gpt2_tokenizer()
    work = {  # name -> (stages, items, items counted)
        "links (parse .. html only)": (link_stages(), links),
        "HTML -> text": ([Stage("html -> text", html_to_text)], pages),
        "cleaning (5 filters)": (clean_stages(), docs),
        "exact dedup": ([ExactDedup()], docs),
        "near dedup (MinHash LSH)": ([NearDedup()], docs),
    }
    configs = [("serial", 1), ("process", 1), ("process", 2), ("dask", 1), ("dask", 2)]
    engines = {c: get_engine(c[0], workers=c[1]) for c in configs}
    times: dict = {(w, c): [] for w in [*work, "tokenize"] for c in configs}
    reference: dict = {}
    import tempfile

    for _ in range(repeats):
        for c in configs:
            eng = engines[c]
            parts = 4 * eng.workers
            for w, (stages, items) in work.items():
                t0 = time.perf_counter()
                out = run_engine(stages, items, engine=eng, partitions=parts).items
                times[(w, c)].append(time.perf_counter() - t0)
                assert reference.setdefault(w, out) == out, (w, c)
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                meta = prepare_on_engine(eng, [x.text for x in docs], d, tok, partitions=parts)
                times[("tokenize", c)].append(time.perf_counter() - t0)
                assert reference.setdefault("tokenize", meta) == meta
    for eng in engines.values():
        eng.close()
    n = {**{w: len(items) for w, (_, items) in work.items()}, "tokenize": len(docs)}
    print("\n### Throughput per stage, items/s (median of", repeats, "interleaved repeats; same output on every engine)\n")
    print("| stage | items | " + " | ".join(f"{e} x{k}" for e, k in configs) + " |")
    print("|---|---|" + "---|" * len(configs))
    for w in n:
        cells = [f"{n[w] / statistics.median(times[(w, c)]):,.0f}" for c in configs]
        print(f"| {w} | {n[w]:,} | " + " | ".join(cells) + " |")
    return {w: statistics.median(times[(w, ("serial", 1))]) / n[w] for w in n}


def main(quick: bool = False) -> None:
    run = run_pipeline(link_stages(), reddit_link_lines())
    links = list(run)
    report_table("Reddit links (2005-12 + 2006-12)", run)
    cmp = compare_domains(domain_counts(l.url for l in links), read_top_domains(), top=10)
    print(f"\n{cmp.n_links} links on {cmp.n_domains} domains; {cmp.covered_links:.1%} of them are on a domain in "
          "GPT-2's top-1000 list.\n\n| domain | links here | rank in WebText top-1000 |\n|---|---|---|")
    for d, c, rank in cmp.shared_top:
        print(f"| {d} | {c} | {rank} |")

    docs = list(read_webtext_sample())
    run = run_pipeline(clean_stages() + [ExactDedup()], docs)
    n_clean = len(list(run))
    report_table(f"Cleaning the WebText sample ({n_clean} of {len(docs)} kept)", run)

    texts = [d.text for d in docs]
    if not quick:
        rates = (0.02, 0.05, 0.10, 0.20)
        print("\n### Near duplicates planted in the WebText sample (300 copies, 3-word shingles, 128 permutations)\n")
        print("| threshold | precision | recall | " + " | ".join(f"recall @ {r:.0%}" for r in rates) + " |")
        print("|---|---|---|" + "---|" * len(rates))
        planted = plant_near_duplicates(texts, n_copies=300, rates=rates, seed=0)
        for threshold in (0.3, 0.5, 0.7):
            found = near_duplicate_pairs(planted.texts, threshold=threshold)
            s = score_pairs(found, planted.pairs)
            per_rate = []
            for r in rates:
                truth = {p for p in planted.pairs if planted.rates[p] == r}
                per_rate.append(f"{len(truth & found) / len(truth):.2f}")
            print(f"| {threshold} | {s.precision:.3f} | {s.recall:.3f} | " + " | ".join(per_rate) + " |")

    startup()
    raw_lines = list(reddit_link_lines())
    sample = docs[:400] if quick else docs
    planted = plant_near_duplicates([d.text for d in sample], n_copies=len(sample) // 10, rates=(0.02, 0.05), seed=0)
    corpus = [Document(f"d{i}", t) for i, t in enumerate(planted.texts)]
    per_item = throughput(raw_lines, [to_page(d) for d in corpus], corpus, repeats=1 if quick else 3)

    n_bytes = sum(len(d.text.encode("utf-8")) for d in corpus)
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    n_tokens = sum(len(x) for x in get_gpt2_tokenizer().encode_batch([d.text for d in corpus]))
    print("\n### Per-item cost on one core (serial engine) and the corpus' shape, for the README cost model\n")
    print("| quantity | value |\n|---|---|")
    for w, s in per_item.items():
        print(f"| {w}: seconds per item | {s:.3g} |")
    print(f"| bytes per document (sample) | {n_bytes / len(corpus):,.0f} |")
    print(f"| GPT-2 tokens per byte | {n_tokens / n_bytes:.3f} |")
    print(f"| near-dedup keys per document (bands) | {len(NearDedup().bands)} x "
          f"{2 + 4 * (NearDedup().bands[0][1] - NearDedup().bands[0][0])} bytes |")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
