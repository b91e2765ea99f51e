"""The chapters' ``SCALE = "gpu"`` path, run on CPU in every CI run (issue 8).

Each chapter is executed in a fresh kernel with ``GPT2_BOOK_SCALE=gpu`` and ``GPT2_BOOK_GPU_SIZE=tiny``
(the gpu branch's code with small slices and few steps), with ``from_pretrained("gpt2")`` resolved from a
random stand-in checkpoint (``tests/_standin.py``: GPT-2's 50,257-token vocabulary and 1,024-token
context, two small layers) in a temporary, offline Hugging Face cache. Outputs are not compared (they
depend on the random stand-in); every cell must run without an error. The executed copies go to a
temporary folder: the committed notebooks are never written.

On a machine without a GPU the kernel first installs a pretend GPU (``tests/_pretend_device.py``): the
chapter sees ``device == "cuda"``, every tensor stays on the CPU but remembers where it would be, and
mixing devices raises as it does on a real GPU (issue 23: ``torch.arange`` positions on the CPU for a
model on the GPU, a generator on the GPU for a model left on the CPU).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _standin import CONTEXT, VOCAB_SIZE, standin_env, write_standin_cache  # noqa: E402
from sync_notebooks import chapter_notebooks  # noqa: E402

CHAPTERS = [p.stem for p in chapter_notebooks()]
PRETEND_GPU_CELL = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
                    "import _pretend_device; _pretend_device.install()")


@pytest.fixture(scope="module")
def standin_cache(tmp_path_factory) -> Path:
    return write_standin_cache(tmp_path_factory.mktemp("hf-cache"))


def test_standin_resolves_offline_like_the_released_gpt2(standin_cache):
    """In a fresh process (huggingface_hub reads its cache location at import), ``from_pretrained("gpt2")``
    finds the stand-in through huggingface_hub with the network off; an id not in the cache fails clearly."""
    code = (
        "import huggingface_hub, pytest\n"
        "from gpt2lib.model import GPT2\n"
        "print(huggingface_hub.snapshot_download('gpt2'))\n"
        "m = GPT2.from_pretrained('gpt2')\n"
        "print(m.config.vocab_size, m.config.block_size, m.config.n_layer)\n"
        "with pytest.raises(OSError, match='could not be fetched'):\n"
        "    GPT2.from_pretrained('gpt2-not-in-the-cache')\n"
    )
    env = {**os.environ, **standin_env(standin_cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    folder, sizes = out.stdout.splitlines()
    assert Path(folder).parent.parent == standin_cache / "models--gpt2"
    vocab, context, n_layer = map(int, sizes.split())
    assert (vocab, context) == (VOCAB_SIZE, CONTEXT)
    assert n_layer < 12  # a stand-in, not the real 124M model


def test_standin_never_overwrites_an_existing_cache_entry(standin_cache):
    before = sorted(p.relative_to(standin_cache) for p in standin_cache.rglob("*"))
    with pytest.raises(FileExistsError, match="models--gpt2"):
        write_standin_cache(standin_cache)
    assert sorted(p.relative_to(standin_cache) for p in standin_cache.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_at_scale_gpu(chapter, standin_cache, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    size = os.environ.get("GPT2_BOOK_GPU_SIZE", "tiny")  # benchmarks/gpu_check.py --chapters-size full: "full"
    for key, value in {**standin_env(standin_cache), "GPT2_BOOK_SCALE": "gpu", "GPT2_BOOK_GPU_SIZE": size,
                       "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    path = ROOT / "book" / f"{chapter}.ipynb"
    nb = nbformat.read(path, as_version=4)
    import torch

    pretend = not torch.cuda.is_available()  # on a real GPU, the real device check
    if pretend:
        nb.cells.insert(0, nbformat.v4.new_code_cell(PRETEND_GPU_CELL))
    nb.cells.append(nbformat.v4.new_code_cell('print(f"device={device}  SCALE={SCALE!r}")'))
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as err:
        pytest.fail(f"{chapter}.ipynb at SCALE='gpu' (GPT2_BOOK_GPU_SIZE={size}): {err}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, for a look after a failure
    seconds = time.perf_counter() - start
    print(f"{chapter}: {seconds:.1f} s")
    expected = "device=cuda  SCALE='gpu'"  # on a GPU, or the pretend one
    assert expected in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_knob_rejects_unknown_values(tmp_path, monkeypatch):
    """A typo in GPT2_BOOK_SCALE or GPT2_BOOK_GPU_SIZE stops the set-up cell with a message naming it."""
    from sync_notebooks import repository_url, setup_cell_source

    source = setup_cell_source(repository_url())
    for env, name in (({"GPT2_BOOK_SCALE": "GPU"}, "GPT2_BOOK_SCALE"),
                      ({"GPT2_BOOK_SCALE": "gpu", "GPT2_BOOK_GPU_SIZE": "small"}, "GPT2_BOOK_GPU_SIZE")):
        for key in ("GPT2_BOOK_SCALE", "GPT2_BOOK_GPU_SIZE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(ValueError, match=f"{name} must be|{name} 'full'"):
            exec(compile(source, "setup-cell", "exec"), {})
    monkeypatch.setenv("GPT2_BOOK_SCALE", "gpu")
    monkeypatch.setenv("GPT2_BOOK_GPU_SIZE", "tiny")
    namespace: dict = {}
    exec(compile(source, "setup-cell", "exec"), namespace)
    assert namespace["GPU_TINY"] is True
    monkeypatch.setenv("GPT2_BOOK_SCALE", "cpu")
    exec(compile(source, "setup-cell", "exec"), namespace)
    assert namespace["GPU_TINY"] is False  # the knob only shrinks the gpu branch
