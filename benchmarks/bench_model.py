"""Speed of gpt2lib's GPT-2 against `transformers.GPT2LMHeadModel` with the same weights (CPU, 1 thread).

Each measurement alternates ours and transformers (interleaved repeats, order swapped every round)
and reports medians. Targets (ratio = ours / HF, for times, where lower is better, and for tokens/s,
where higher is better):

* training step (forward + backward), n_layer 4, n_embd 256, batch 8 x 256: time <= 0.95x HF
* 124M forward, batch 1 x 128: time <= 1.0x HF
* greedy generation, 32-token prompt + 64 new tokens: tokens/s >= 1.3x HF (small), >= 1.0x HF (124M)

Usage: python benchmarks/bench_model.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from gpt2lib.model import GPT2, GPT2Config  # noqa: E402
from gpt2lib.weights import config_to_hf, load_state_dict  # noqa: E402


def twins(config: GPT2Config, seed: int = 0):
    """Our model and a transformers GPT2LMHeadModel (sdpa attention) with the same weights."""
    import transformers
    from transformers import GPT2Config as HFConfig
    from transformers import GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    hf_cfg = HFConfig(**{k: v for k, v in config_to_hf(config).items() if k != "gpt2lib"})
    hf_cfg._attn_implementation = "sdpa"
    hf = GPT2LMHeadModel(hf_cfg)
    ours = load_state_dict(GPT2(config), hf.state_dict())
    return ours, hf


def interleaved(fn_ours, fn_hf, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median seconds of each function, alternating which one runs first."""
    for _ in range(warmup):
        fn_ours(), fn_hf()
    a, b = [], []
    for r in range(repeats):
        pair = [(fn_ours, a), (fn_hf, b)]
        for fn, out in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def bench_train_step(repeats: int) -> tuple[float, float]:
    config = GPT2Config(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab_size=50257)
    ours, hf = twins(config)
    ours.train(), hf.train()
    idx = torch.randint(0, 50257, (8, 256), generator=torch.Generator().manual_seed(0))
    targets = torch.cat([idx[:, 1:], torch.full((8, 1), -1)], dim=1)  # same loss as HF's labels=idx

    def step_ours():
        ours.zero_grad(set_to_none=True)
        _, loss = ours(idx, targets, return_logits=False)  # as gpt2lib.train runs it
        loss.backward()

    def step_hf():
        hf.zero_grad(set_to_none=True)
        hf(idx, labels=idx).loss.backward()

    return interleaved(step_ours, step_hf, repeats)


def bench_forward_124m(repeats: int) -> tuple[float, float]:
    ours, hf = twins(GPT2Config.from_name("gpt2"))
    ours.eval(), hf.eval()
    idx = torch.randint(0, 50257, (1, 128), generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def fwd_ours():
        ours(idx)

    @torch.no_grad()
    def fwd_hf():
        hf(idx)

    return interleaved(fwd_ours, fwd_hf, repeats)


def bench_generate(config: GPT2Config, repeats: int, prompt_len: int = 32, new: int = 64) -> tuple[float, float]:
    """Tokens per second of greedy decoding (both with a KV cache); also checks the tokens agree."""
    ours, hf = twins(config)
    ours.eval(), hf.eval()
    idx = torch.randint(0, config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(0))

    def gen_ours():
        return ours.generate(idx, new, temperature=0)

    @torch.no_grad()
    def gen_hf():
        return hf.generate(
            idx, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
            pad_token_id=0, eos_token_id=None,
        )

    same = torch.equal(gen_ours(), gen_hf())
    t_ours, t_hf = interleaved(gen_ours, gen_hf, repeats)
    if not same:
        print(f"WARNING: greedy tokens differ from transformers for {config}")
    return new / t_ours, new / t_hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, numbers noisier)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 3 if args.quick else 9
    small = GPT2Config(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab_size=50257)

    rows = []
    t_o, t_h = bench_train_step(n)
    rows.append(("train step 4L/256, 8x256 (s)", t_o, t_h, t_o / t_h, "<= 0.95", t_o / t_h <= 0.95))
    t_o, t_h = bench_forward_124m(n)
    rows.append(("124M forward 1x128 (s)", t_o, t_h, t_o / t_h, "<= 1.0", t_o / t_h <= 1.0))
    s_o, s_h = bench_generate(small, n)
    rows.append(("generate 4L/256 (tok/s)", s_o, s_h, s_o / s_h, ">= 1.3", s_o / s_h >= 1.3))
    s_o, s_h = bench_generate(GPT2Config.from_name("gpt2"), max(3, n // 2))
    rows.append(("generate 124M (tok/s)", s_o, s_h, s_o / s_h, ">= 1.0", s_o / s_h >= 1.0))

    import transformers

    print(f"\ntorch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {n} (medians, interleaved)\n")
    print("| benchmark | ours | HF | ratio | target | pass |")
    print("|---|---:|---:|---:|---|---|")
    for name, o, h, r, target, ok in rows:
        print(f"| {name} | {o:.4g} | {h:.4g} | {r:.3f} | {target} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
