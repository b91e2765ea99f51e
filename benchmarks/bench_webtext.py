"""WebText pipeline at laptop scale (GPT-2 §2.1): stage counts, near-duplicate detection, throughput.

1. The link stages on the Reddit link files (2005-12, 2006-12): kept/dropped per stage and reason,
   and how the surviving links' domains compare with GPT-2's published top-1000 WebText domains.
2. The cleaning stages on the 1408-document WebText sample.
3. Near-duplicate detection (MinHash + LSH) on the WebText sample with planted copies: precision and
   recall against the exact list of planted pairs, per perturbation rate and threshold.
4. Throughput of the cleaning + exact-dedup pipeline, serial vs a 2-process pool (median of
   interleaved repeats).

    GPT2LIB_DATA_MIRROR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_webtext.py
"""
from __future__ import annotations

import statistics
import time

from gpt2lib.dedup import ExactDedup, near_duplicate_pairs, plant_near_duplicates, score_pairs
from gpt2lib.webtext import (Stage, clean_stages, compare_domains, domain_counts, link_stages, read_top_domains,
                             read_webtext_sample, reddit_link_lines, run_pipeline)


def report_table(title: str, run) -> None:
    print(f"\n### {title}\n\n| stage | seen | kept | dropped (by reason) | notes |\n|---|---|---|---|---|")
    for r in run.reports:
        drops = ", ".join(f"{k}: {v}" for k, v in r.dropped.most_common()) or "-"
        notes = ", ".join(f"{k}: {v}" for k, v in r.notes.most_common()) or "-"
        print(f"| {r.name} | {r.seen} | {r.kept} | {drops} | {notes} |")


def main() -> None:
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

    print("\n### Throughput: cleaning + exact dedup over the sample x4 (median of 3 interleaved runs)\n")
    big = docs * 4
    times: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(3):
        for w in times:
            t0 = time.perf_counter()
            out = list(run_pipeline(clean_stages() + [ExactDedup()], big,
                                    workers=w, chunk_size=256))
            times[w].append(time.perf_counter() - t0)
    print("| workers | docs/s | time vs serial |\n|---|---|---|")
    for w, ts in times.items():
        t = statistics.median(ts)
        print(f"| {w or 'serial'} | {len(big) / t:.0f} | {t / statistics.median(times[0]):.2f}x |")
    assert len(out) == n_clean  # copies are exact duplicates: only the originals survive


if __name__ == "__main__":
    main()
