"""Specification of sampling (gpt2lib.generation): the KV cache changes speed, never the tokens.

References: recomputing the whole (cropped) prefix at every step without a cache, and plain Python
re-computations of the top-k / nucleus filters.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.generation import generate, sample_next, stream, top_k_filter, top_p_filter
from gpt2lib.model import GPT2, GPT2Config


def make(block_size: int = 32, vocab_size: int = 61, seed: int = 0, **kw) -> GPT2:
    torch.manual_seed(seed)
    config = GPT2Config(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, **kw)
    return GPT2(config).eval()


@torch.no_grad()
def greedy_without_cache(model: GPT2, idx: torch.Tensor, n: int) -> torch.Tensor:
    """The textbook loop: crop to the context, run the whole window, take the argmax."""
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


# -------------------------------------------------------------------------------------------------
# KV cache == recomputation
@given(B=st.integers(1, 3), T=st.integers(1, 12), n=st.integers(0, 20), seed=st.integers(0, 1000))
@settings(max_examples=15, deadline=None)
def test_greedy_with_cache_is_identical_to_recomputing_the_prefix(B, T, n, seed):
    model = make(seed=seed % 5)
    idx = torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(model.generate(idx, n, temperature=0), greedy_without_cache(model, idx, n))


@pytest.mark.parametrize("T", [3, 8, 20])
def test_generation_past_the_context_slides_the_window(T):
    """block_size 8: prompts longer than the context are cropped; the window slides past it."""
    model = make(block_size=8, seed=2)
    idx = torch.randint(0, 61, (2, T), generator=torch.Generator().manual_seed(T))
    out = model.generate(idx, 25, temperature=0)
    assert out.shape == (2, T + 25)
    assert torch.equal(out[:, :T], idx)
    assert torch.equal(out, greedy_without_cache(model, idx, 25))


def test_manual_attention_generates_the_same_tokens_as_sdpa():
    model = make(seed=4)
    idx = torch.randint(0, 61, (2, 5), generator=torch.Generator().manual_seed(0))
    a = model.generate(idx, 40, temperature=0)  # runs past block_size=32 too
    model.set_attention("manual")
    assert torch.equal(model.generate(idx, 40, temperature=0), a)


def test_one_dimensional_prompt_gives_one_dimensional_output_and_stream_yields_ints():
    model = make()
    prompt = torch.tensor([5, 9, 2])
    out = model.generate(prompt, 6, temperature=0)
    assert out.shape == (9,) and torch.equal(out, greedy_without_cache(model, prompt[None], 6)[0])
    streamed = list(model.stream(prompt, 6, temperature=0))
    assert all(isinstance(t, int) for t in streamed) and streamed == out[3:].tolist()


def test_stream_yields_the_same_tokens_as_generate_one_step_at_a_time():
    model = make()
    idx = torch.randint(0, 61, (2, 4), generator=torch.Generator().manual_seed(1))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    steps = list(stream(model, idx, 12, temperature=0.8, top_k=20, generator=g1))
    assert len(steps) == 12 and all(s.shape == (2,) for s in steps)
    assert torch.equal(torch.stack(steps, 1), generate(model, idx, 12, temperature=0.8, top_k=20, generator=g2)[:, 4:])


def test_generation_sees_weight_updates_made_after_an_earlier_call():
    """Generation keeps a transposed copy of the LM head; changing the weights must invalidate it."""
    model = make(seed=1)
    idx = torch.randint(0, 61, (2, 4), generator=torch.Generator().manual_seed(5))
    model.generate(idx, 8, temperature=0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    _, loss = model(idx, torch.roll(idx, -1, 1))
    loss.backward()
    opt.step()  # in-place update of the tied head
    assert torch.equal(model.generate(idx, 8, temperature=0), greedy_without_cache(model, idx, 8))
    model.load_state_dict(make(seed=2).state_dict())
    assert torch.equal(model.generate(idx, 8, temperature=0), greedy_without_cache(model, idx, 8))


def test_zero_new_tokens_returns_the_prompt():
    model = make()
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(model.generate(idx, 0), idx)


def test_generation_restores_training_mode():
    model = make(dropout=0.1).train()
    model.generate(torch.tensor([[1, 2]]), 3)
    assert model.training


# -------------------------------------------------------------------------------------------------
# End of sequence
def test_eos_stops_each_row_and_pads_finished_rows_with_eos():
    model = make(seed=7)
    idx = torch.randint(0, 61, (4, 3), generator=torch.Generator().manual_seed(3))
    free = model.generate(idx, 30, temperature=0)[:, 3:]
    eos = int(free[0, 2])  # row 0 certainly produces it at step 2
    out = model.generate(idx, 30, temperature=0, eos_id=eos)[:, 3:]
    # expected, built from the run without eos: copy up to the first eos, then pad with eos
    firsts = []
    for row in free.tolist():
        firsts.append(row.index(eos) if eos in row else len(row) - 1)
    n = max(firsts) + 1
    assert out.shape == (4, n)
    for r, row in enumerate(free.tolist()):
        k = firsts[r]
        assert out[r, : k + 1].tolist() == row[: k + 1]
        assert all(t == eos for t in out[r, k + 1:].tolist())


# -------------------------------------------------------------------------------------------------
# Filters and sampling
def top_k_reference(row: list[float], k: int) -> list[float]:
    kth = sorted(row, reverse=True)[min(k, len(row)) - 1]
    return [x if x >= kth else float("-inf") for x in row]


def top_p_reference(row: list[float], p: float) -> list[float]:
    # float64: in float32 the top token of a peaked row rounds to probability 1 and its tail would look
    # empty, while the exact mass before every token is below 1 (so p=1 keeps all of them)
    probs = torch.softmax(torch.tensor(row, dtype=torch.float64), 0).tolist()
    order = sorted(range(len(row)), key=lambda i: -row[i])
    keep, mass = set(), 0.0
    for i in order:  # take tokens in order of probability until the mass reaches p
        keep.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return [x if i in keep else float("-inf") for i, x in enumerate(row)]


logit_rows = st.lists(
    st.lists(st.floats(-20, 20, allow_nan=False).map(lambda x: round(x, 2)), min_size=1, max_size=30, unique=True),
    min_size=1,
    max_size=3,
).filter(lambda rows: len({len(r) for r in rows}) == 1)


@given(rows=logit_rows, k=st.integers(1, 40))
@settings(max_examples=50, deadline=None)
def test_top_k_filter_matches_a_plain_recomputation(rows, k):
    logits = torch.tensor(rows, dtype=torch.float32)
    assert top_k_filter(logits, k).tolist() == [top_k_reference(r, k) for r in logits.tolist()]


def test_top_p_one_keeps_every_token_even_when_float_mass_rounds_to_one():
    """p=1 is no filter at all, also when the float32 cumulative mass reaches 1.0 before the
    last tokens (a peaked row: the tail's exact mass is below 1 but rounds to it)."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 16.75]])
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    assert torch.equal(top_p_filter(logits, 1), logits)


@given(rows=logit_rows, p=st.floats(0.01, 1.0))
@settings(max_examples=50, deadline=None)
def test_top_p_filter_matches_a_plain_recomputation(rows, p):
    logits = torch.tensor(rows, dtype=torch.float32)
    got = top_p_filter(logits, p)
    for g, r in zip(got.tolist(), logits.tolist()):
        ref = top_p_reference(r, p)
        # float summation order may differ right at the boundary: compare the kept sets, allow one
        # token of difference only when its cumulative mass is within 1e-5 of p
        kept, kept_ref = {i for i, x in enumerate(g) if x > float("-inf")}, {i for i, x in enumerate(ref) if x > float("-inf")}
        if kept != kept_ref:
            probs = torch.softmax(torch.tensor(r), 0)
            assert len(kept ^ kept_ref) == 1
            i = (kept ^ kept_ref).pop()
            assert abs(probs[probs > probs[i]].sum().item() - p) < 1e-5
        assert max(range(len(r)), key=lambda i: r[i]) in kept  # the most likely token always survives


def test_filters_reject_bad_arguments():
    logits = torch.zeros(1, 5)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            top_k_filter(logits, bad)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="top_p"):
            top_p_filter(logits, bad)


def test_sampling_follows_the_softmax_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, temperature=1.0, generator=g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=4).float() / 4000
    assert torch.allclose(freq, torch.softmax(logits[0], 0), atol=0.025)
    g = torch.Generator().manual_seed(0)
    hot = torch.stack([sample_next(logits, temperature=2.0, generator=g) for _ in range(4000)])
    freq = torch.bincount(hot.flatten(), minlength=4).float() / 4000
    assert torch.allclose(freq, torch.softmax(logits[0] / 2.0, 0), atol=0.025)


def test_top_k_1_and_tiny_top_p_are_greedy():
    model = make(seed=5)
    idx = torch.randint(0, 61, (2, 4), generator=torch.Generator().manual_seed(2))
    greedy = model.generate(idx, 10, temperature=0)
    assert torch.equal(model.generate(idx, 10, top_k=1, generator=torch.Generator().manual_seed(1)), greedy)
    assert torch.equal(model.generate(idx, 10, top_p=1e-6, generator=torch.Generator().manual_seed(1)), greedy)


def test_sampling_is_deterministic_given_a_generator():
    model = make()
    idx = torch.tensor([[3, 4, 5]])
    run = lambda s: model.generate(idx, 20, temperature=1.0, top_p=0.95, generator=torch.Generator().manual_seed(s))  # noqa: E731
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


# -------------------------------------------------------------------------------------------------
# Errors
def test_bad_generation_arguments_raise_at_the_call():
    model = make()
    idx = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="61"):
        stream(model, torch.tensor([[1, 61]]), 3)  # raised before the first next()
    with pytest.raises(ValueError, match="-2"):
        model.generate(torch.tensor([[-2, 1]]), 3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(idx, 3, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(idx, 3, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(idx, 3, top_p=0.0)
    with pytest.raises(ValueError, match="eos_id"):
        model.generate(idx, 3, eos_id=61)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(idx, -1)
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="dtype"):
        model.generate(torch.tensor([[1.0, 2.0]]), 3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -0.5])
def test_non_finite_or_negative_temperature_is_rejected_everywhere(bad):
    """temperature=nan used to pass the check (nan < 0 is False) and sample garbage; now every entry
    point refuses it, before any work."""
    model = make()
    idx = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        stream(model, idx, 3, temperature=bad)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        model.generate(idx, 3, temperature=bad)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        sample_next(torch.zeros(1, 5), temperature=bad)


def test_nan_top_p_and_top_k_are_rejected():
    model = make()
    idx = torch.tensor([[1, 2]])
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="top_p"):
            model.generate(idx, 3, top_p=bad)
        with pytest.raises(ValueError, match="top_p"):
            top_p_filter(torch.zeros(1, 5), bad)
        with pytest.raises(ValueError, match="top_k"):
            model.generate(idx, 3, top_k=bad)
        with pytest.raises(ValueError, match="top_k"):
            top_k_filter(torch.zeros(1, 5), bad)


@pytest.mark.parametrize("gen_device, model_device, ok", [
    ("cpu", "cpu", True), ("cuda", "cuda:0", True), ("cuda:0", "cuda", True), ("cuda:1", "cuda:1", True),
    ("cpu", "cuda", False), ("cuda:0", "cpu", False), ("cuda:0", "cuda:1", False), ("cpu", "mps", False),
])
def test_check_generator_device_compares_both_devices(gen_device, model_device, ok):
    """The check on device objects (a CUDA-less machine cannot make a CUDA generator): a generator stands
    in as any object with a ``device``, which is all the check reads."""
    from types import SimpleNamespace

    from gpt2lib.generation import check_generator_device

    gen = SimpleNamespace(device=torch.device(gen_device))
    if ok:
        check_generator_device(gen, torch.device(model_device))
        return
    with pytest.raises(ValueError) as info:
        check_generator_device(gen, model_device)
    assert str(torch.device(gen_device)) in str(info.value) and str(torch.device(model_device)) in str(info.value)


def test_a_generator_on_another_device_than_the_model_is_refused_at_the_call():
    """The book's TL;DR defect (issue 8): a CPU torch.Generator with the model elsewhere. Here the model is
    on the meta device (no CUDA needed); generate, stream and sample_next all name both devices before any
    work, also for greedy decoding, where the mistake would otherwise surface only once someone samples."""
    model = make().to("meta")
    idx = torch.tensor([[1, 2]], device="meta")
    gen = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.0):
        with pytest.raises(ValueError, match=r"Generator is on device cpu but the model .* on meta"):
            stream(model, idx, 3, temperature=temperature, generator=gen)
        with pytest.raises(ValueError, match=r"on device cpu .* on meta"):
            generate(model, idx, 3, temperature=temperature, generator=gen)
    with pytest.raises(ValueError, match=r"on device cpu .* on meta"):
        sample_next(torch.zeros(1, 5, device="meta"), generator=gen)
    cpu = make()
    assert generate(cpu, torch.tensor([[1, 2]]), 3, generator=gen).shape == (1, 5)  # same device: fine


@pytest.mark.parametrize("temperature", [1e-40, 1e-45, 5e-324])
def test_a_tiny_positive_temperature_samples_the_argmax_instead_of_failing(temperature):
    """temperature=1e-40 passes the "finite number >= 0" check, but logits / 1e-40 overflow float32 to inf
    and softmax gave NaN, so torch.multinomial raised deep inside. In the limit T -> 0 sampling is greedy."""
    from gpt2lib.generation import sample_next

    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    logits[1, 7] = float("-inf")  # a masked logit changes nothing
    gen = torch.Generator().manual_seed(1)
    for top_k in (None, 5):
        got = sample_next(logits, temperature=temperature, top_k=top_k, generator=gen)
        assert torch.equal(got, logits.argmax(dim=-1))
