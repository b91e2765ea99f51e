"""The pretend GPU of ``tests/_pretend_device.py`` (the device check of the chapters' gpu branch), and the
library's device handling it makes testable on a CPU (issue 23).

Each case runs in a fresh interpreter (installing the pretend GPU patches torch for the whole process) and
states what a real CUDA device does: mixing a CUDA and a CPU tensor (other than a CPU scalar) in one
operation raises; ``copy_`` and ``.to`` move; ``.numpy()`` of a CUDA tensor raises; a generator must be
on the device of the tensors it samples for.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PRELUDE = f"""
import sys; sys.path.insert(0, {str(TESTS)!r})
import _pretend_device; _pretend_device.install()
import numpy as np, pytest, torch
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.generation import generate
MIX = "Expected all tensors to be on the same device"
"""


def run(body: str) -> str:
    code = PRELUDE + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


MIXES = [
    "torch.ones(3, device='cuda') + torch.ones(3)",
    "torch.nn.Linear(3, 3).cuda()(torch.ones(2, 3))",
    "torch.nn.Linear(3, 3)(torch.ones(2, 3).to('cuda'))",
    "torch.nn.Embedding(5, 3).to(torch.device('cuda'))(torch.arange(4))",
    "torch.multinomial(torch.ones(2, 4), 1, generator=torch.Generator(device='cuda'))",
    "torch.multinomial(torch.ones(2, 4, device='cuda'), 1, generator=torch.Generator())",
]


def test_mixing_devices_raises_as_on_a_gpu():
    cases = "\n".join(f"with pytest.raises(RuntimeError, match='same device|device type for generator'):\n"
                      f"    {case}\nprint('raised')" for case in MIXES)
    assert run(cases).split() == ["raised"] * len(MIXES)


def test_what_a_gpu_allows_stays_allowed():
    out = run("""
    x = torch.ones(3, device="cuda")
    y = x * torch.tensor(2.0) + 1                        # a CPU scalar tensor may join
    print(y.device, x.to("cpu").device, x.device)        # .to makes a copy; x stays
    z = torch.zeros(3); z.copy_(x); print(z.device)      # copy_ crosses devices
    x[torch.tensor([0, 2])]; print("indexed")            # CPU indices into a GPU tensor (torch 2.3's modes
                                                         # do not see indexing: its result is not marked)
    print(torch.arange(3, device=x.device).device)       # asking the tensor for its device
    with pytest.raises(TypeError, match="numpy"):
        np.asarray(x)
    print(np.asarray(x.cpu()).sum(), y.tolist())
    """)
    assert out.split() == ["cuda:0", "cpu", "cuda:0", "cpu", "indexed", "cuda:0", "3.0", "[3.0,", "3.0,", "3.0]"]


def test_the_model_moves_cpu_ids_to_its_device_and_trains_there():
    """gpt2lib moves integer ids (and targets) to the model's device; a training step stays on it."""
    out = run("""
    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=64)).to("cuda")
    idx = torch.randint(0, 64, (2, 8))                   # on the CPU
    logits, loss = model(idx, idx)
    print(model.device, logits.device)
    loss.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    print(model.attention_maps(idx).device, generate(model, idx[:1, :2], 3).device)
    with pytest.raises(ValueError, match="Generator is on device cpu but the model"):
        generate(model, idx[:1, :2], 3, generator=torch.Generator())
    with pytest.raises(ValueError, match="Generator is on device cuda:0 but the model"):
        generate(GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=64)), idx[:1, :2], 3,
                 generator=torch.Generator(device="cuda"))
    g = torch.Generator(device=model.device).manual_seed(0)
    print(generate(model, idx[:1, :2], 3, temperature=1.0, generator=g).shape)
    """)
    assert out.split() == ["cuda:0", "cuda:0", "cuda:0", "cuda:0", "torch.Size([1,", "5])"]


def test_ids_and_a_meta_model_still_fail_clearly():
    from gpt2lib.model import GPT2, GPT2Config
    import torch

    with torch.device("meta"):
        model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=64))
    with pytest.raises(ValueError, match="idx is on device cpu but the model is on meta"):
        model(torch.zeros(1, 4, dtype=torch.long))
