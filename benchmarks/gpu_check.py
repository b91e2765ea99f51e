"""Everything a GPU run must show, in one go (issue 8); called by ``benchmarks/gpu_check.sh``.

Parts (each timed, each failure recorded without stopping the others; the summary is rewritten after
every part, so an interrupted run still leaves its finished parts):

a. GPT-2 124M training (context 1024, the paper's 512 x 1024 tokens per step): tokens/s and MFU in fp32
   (TF32 matmuls), bf16 and bf16 + ``torch.compile``. MFU uses the PaLM formula (6N + 12·L·d·T FLOPs per
   token, :func:`gpt2lib.hardware.flops_per_token`) over the peak from :data:`gpt2lib.hardware.PEAK_TFLOPS`.
b. The fp16 + GradScaler path as a 16 GB T4 runs it (the micro-batch :func:`max_micro_batch_size` picks).
c. :func:`gpt2lib.hardware.estimate_memory` against ``torch.cuda.max_memory_allocated`` for the training
   runs of a/b, and the evaluation estimate against an evaluation of 16 x 1024 tokens.
d. Every chapter's ``SCALE = "gpu"`` branch on this device, with the random stand-in ``gpt2`` checkpoint
   (``tests/test_gpu_path.py``: the small sizes of ``tests/gpu_tiny_sizes.toml`` unless ``--chapters-size full``).
e. gpt2lib against ``transformers`` (same weights): evaluation (forward of 8 x 1024) and greedy
   generation tokens/s, medians of interleaved repeats.

``--dry-run`` runs every part on the CPU with tiny sizes in seconds (CI's test of this script).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

PARTS = ("train", "fp16", "memory", "chapters", "throughput")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _train_args(dry: bool, device: str, **kw) -> SimpleNamespace:
    if dry:
        base = dict(model="gpt2-tiny", vocab_size=512, block_size=64, micro_batch_size=4, tokens_per_step=512,
                    steps=2, warmup=1, device="cpu")
    else:
        base = dict(model="gpt2", vocab_size=50304, block_size=1024, micro_batch_size=16,
                    tokens_per_step=512 * 1024, steps=3, warmup=2, device=device)
    base.update(kw)
    return SimpleNamespace(**base)


def part_train(dry: bool, device: str, work: Path) -> dict:
    """a: fp32 / bf16 / bf16 + compile training throughput and MFU (bench_gpu_train.run_mode)."""
    from bench_gpu_train import run_mode, synthetic_shards

    args = _train_args(dry, device)
    data = work / "train-data"
    synthetic_shards(data, max(4 * args.tokens_per_step * (args.steps + args.warmup), 1 << 16) + 1, args.vocab_size)
    modes = [("fp32", "fp32", False), ("bf16", "bf16", False)] + ([] if dry else [("bf16+compile", "bf16", True)])
    rows = [run_mode(name, precision, compile_, args, data, work / "train-runs") for name, precision, compile_ in modes]
    return {"config": vars(args), "rows": rows}


def part_fp16(dry: bool, device: str, work: Path) -> dict:
    """b: fp16 autocast + GradScaler at the micro-batch that fits a 16 GB T4 (as on Colab's free GPU)."""
    from bench_gpu_train import run_mode, synthetic_shards

    from gpt2lib.hardware import max_micro_batch_size
    from gpt2lib.model import GPT2Config

    args = _train_args(dry, device)
    cfg = GPT2Config.from_name(args.model, vocab_size=args.vocab_size, block_size=args.block_size)
    t4_batch = max_micro_batch_size(cfg, 16e9, block_size=args.block_size, precision="fp16")
    if not dry:  # whole micro-batches per step
        args.micro_batch_size = max(b for b in range(1, t4_batch + 1) if args.tokens_per_step % (b * args.block_size) == 0)
    data = work / "fp16-data"
    synthetic_shards(data, max(4 * args.tokens_per_step * (args.steps + args.warmup), 1 << 16) + 1, args.vocab_size)
    precision = "fp16" if device.startswith("cuda") else "bf16"  # fp16 autocast + GradScaler needs CUDA
    name = "fp16+GradScaler (T4 micro-batch)" if precision == "fp16" else "bf16 (dry run: fp16 needs CUDA)"
    row = run_mode(name, precision, False, args, data, work / "fp16-runs")
    return {"t4_micro_batch": t4_batch, "micro_batch_size": args.micro_batch_size, "rows": [row],
            "fits_16GB": row["peak_mem_gib"] * 2**30 < 16e9 if row["peak_mem_gib"] else None}


def part_memory(dry: bool, device: str, work: Path, done: dict) -> dict:
    """c: estimate_memory vs max_memory_allocated, training (rows of a/b) and evaluation (16 x 1024 tokens)."""
    from gpt2lib import evaluate, hardware
    from gpt2lib.model import GPT2, GPT2Config

    train_rows = [
        {k: r[k] for k in ("mode", "precision", "est_mem_gib", "peak_mem_gib")}
        for part in ("train", "fp16") for r in done.get(part, {}).get("rows", [])
    ]
    cfg = GPT2Config.from_name("gpt2-tiny" if dry else "gpt2", vocab_size=50257,  # token_nlls prepends id 50256
                               block_size=64 if dry else 1024)
    batch, T = (2, 64) if dry else (16, 1024)
    model = GPT2(cfg).to(device).eval()
    ids = torch.randint(0, cfg.vocab_size, (batch * T,), generator=torch.Generator().manual_seed(0))  # + <|endoftext|>: batch windows of T
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    nll = evaluate.token_nlls(model, ids, stride=T, batch_size=batch, n_vocab=cfg.vocab_size)
    _sync(device)
    eval_row = {"n_layer": cfg.n_layer, "batch": batch, "block_size": T, "n_tokens": int(len(nll)),
                "seconds": time.perf_counter() - t0,
                "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None}
    estimate = getattr(hardware, "estimate_eval_memory", None)  # added with half-precision evaluation
    eval_row["est_mem_gib"] = None if estimate is None else estimate(
        cfg, batch_size=batch, block_size=T, vocab=cfg.vocab_size, precision=hardware.choose_precision(device)).total / 2**30
    return {"train": train_rows, "eval": eval_row}


def part_chapters(dry: bool, device: str, work: Path, size: str) -> dict:
    """d: tests/test_gpu_path.py on this device: every chapter at SCALE="gpu" with the stand-in gpt2."""
    select = "test_chapter_runs_at_scale_gpu and (preface or abstract)" if dry else "test_chapter_runs_at_scale_gpu"
    workers = ["-p", "no:xdist"] if dry else ["-n", str(min(8, os.cpu_count() or 1))]
    env = {**os.environ, "GPT2_BOOK_GPU_SIZE": size}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, "-k", select, "--durations=0",
           str(ROOT / "tests" / "test_gpu_path.py")]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    tail = out.stdout[-4000:]
    (work / "chapters.log").write_text(out.stdout + out.stderr)
    durations = {}
    for line in out.stdout.splitlines():  # "12.34s call     tests/test_gpu_path.py::test_chapter_runs_at_scale_gpu[model]"
        parts = line.split()
        if len(parts) == 3 and parts[1] == "call" and "[" in parts[2]:
            durations[parts[2].split("[")[1].rstrip("]")] = float(parts[0].rstrip("s"))
    return {"returncode": out.returncode, "passed": out.returncode == 0, "size": size,
            "wall_s": time.perf_counter() - t0, "chapter_seconds": durations, "pytest_tail": tail[-1500:]}


def part_throughput(dry: bool, device: str, work: Path) -> dict:
    """e: gpt2lib vs transformers, same weights: evaluation forward and greedy generation tokens/s."""
    from bench_model import twins

    from gpt2lib import hardware
    from gpt2lib.model import GPT2Config

    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=64, block_size=128, vocab_size=512) if dry else GPT2Config.from_name("gpt2")
    ours, hf = twins(cfg)
    ours, hf = ours.to(device).eval(), hf.to(device).eval()
    precision = hardware.choose_precision(device)  # what gpt2lib.evaluate uses: bf16 / fp16 on GPUs, fp32 on CPU
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    repeats = 3 if dry else 10
    B, T = (2, 64) if dry else (8, 1024)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=g).to(device)
    prompt = torch.randint(0, cfg.vocab_size, (1, 32), generator=g).to(device)
    new = 16 if dry else 128

    def timed(fn):
        def run():
            with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                fn()
            _sync(device)
        return run

    def interleaved(a, b):
        a(), b()  # warm-up
        ta, tb = [], []
        for r in range(repeats):
            pair = [(a, ta), (b, tb)] if r % 2 == 0 else [(b, tb), (a, ta)]
            for fn, out in pair:
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return statistics.median(ta), statistics.median(tb)

    f_ours, f_hf = interleaved(timed(lambda: ours(idx)), timed(lambda: hf(idx)))
    g_ours, g_hf = interleaved(
        timed(lambda: ours.generate(prompt, new, temperature=0)),
        timed(lambda: hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
                                  pad_token_id=0, eos_token_id=None)))
    return {"precision": precision, "forward_batch": [B, T], "new_tokens": new, "repeats": repeats, "rows": [
        {"what": f"evaluation forward {B} x {T}", "ours_tokens_per_s": B * T / f_ours, "hf_tokens_per_s": B * T / f_hf,
         "ratio": f_hf / f_ours},
        {"what": f"greedy generation, 32-token prompt + {new}", "ours_tokens_per_s": new / g_ours,
         "hf_tokens_per_s": new / g_hf, "ratio": g_hf / g_ours},
    ]}


def markdown(summary: dict) -> str:
    """The summary as the markdown that goes into README.md."""
    lines = [f"GPU check on {summary['device']} (torch {summary['torch']}, {summary['started']}), "
             f"{'DRY RUN on CPU, ' if summary['dry_run'] else ''}{summary.get('wall_s', 0):.0f} s in all.", ""]
    for part in ("train", "fp16"):
        res = summary["parts"].get(part, {})
        if "rows" in res:
            if part == "train":
                lines += ["| mode | tokens/s | MFU | est. memory (GiB) | peak allocated (GiB) | wall (s) |",
                          "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for r in res["rows"]:
                mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
                peak = f"{r['peak_mem_gib']:.2f}" if r.get("peak_mem_gib") is not None else "n/a"
                lines.append(f"| {r['mode']} | {r['tokens_per_s']:,.0f} | {mfu} | {r['est_mem_gib']:.2f} | {peak} | "
                             f"{r['wall_s']:.0f} |")
    mem = summary["parts"].get("memory", {}).get("eval")
    if mem:
        est = f"{mem['est_mem_gib']:.2f}" if mem.get("est_mem_gib") is not None else "n/a"
        peak = f"{mem['peak_mem_gib']:.2f}" if mem.get("peak_mem_gib") is not None else "n/a"
        lines += ["", f"Evaluation, {mem['batch']} x {mem['block_size']} tokens: estimated {est} GiB, "
                      f"peak allocated {peak} GiB."]
    ch = summary["parts"].get("chapters")
    if ch and "passed" in ch:
        lines += ["", f"Chapters at SCALE='gpu' (GPT2_BOOK_GPU_SIZE={ch['size']}): "
                      f"{'all passed' if ch['passed'] else 'FAILED'}, {len(ch['chapter_seconds'])} timed, {ch['wall_s']:.0f} s."]
    tp = summary["parts"].get("throughput")
    if tp and "rows" in tp:
        lines += ["", f"| gpt2lib vs transformers ({tp['precision']}) | ours tokens/s | transformers tokens/s | ours / HF |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['what']} | {r['ours_tokens_per_s']:,.0f} | {r['hf_tokens_per_s']:,.0f} | {r['ratio']:.2f}x |"
                  for r in tp["rows"]]
    failed = [name for name, res in summary["parts"].items() if "error" in res]
    if failed:
        lines += ["", "Failed parts: " + ", ".join(failed) + " (tracebacks in summary.json)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU with tiny sizes, in seconds")
    ap.add_argument("--out", type=Path, required=True, help="folder for summary.json and summary.md (created)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--chapters-size", choices=("tiny", "full"), default="tiny",
                    help="GPT2_BOOK_GPU_SIZE for part d (full: the chapters' real gpu sizes, much longer)")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"--parts: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run with --dry-run to check the script on the CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
               "torch": torch.__version__, "dry_run": args.dry_run,
               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "parts": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        for name in parts:
            t0 = time.perf_counter()
            print(f"[gpu_check] part {name} ...", flush=True)
            try:
                if name == "train":
                    res = part_train(args.dry_run, device, work)
                elif name == "fp16":
                    res = part_fp16(args.dry_run, device, work)
                elif name == "memory":
                    res = part_memory(args.dry_run, device, work, summary["parts"])
                elif name == "chapters":
                    res = part_chapters(args.dry_run, device, args.out, args.chapters_size)
                else:
                    res = part_throughput(args.dry_run, device, work)
            except Exception as exc:  # one broken part must not lose the others' numbers
                res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(res["traceback"], file=sys.stderr, flush=True)
            res["part_s"] = time.perf_counter() - t0
            summary["parts"][name] = res
            summary["wall_s"] = time.perf_counter() - start
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
            (args.out / "summary.md").write_text(markdown(summary))
            print(f"[gpu_check] part {name}: {'FAILED' if 'error' in res else 'done'} in {res['part_s']:.0f} s", flush=True)
    print(markdown(summary))
    failed = [n for n, r in summary["parts"].items() if "error" in r or r.get("passed") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
