"""The chapters' ``SCALE = "gpu"`` path, run on CPU in every CI run (issue 8).

Each chapter is executed in a fresh kernel with ``GPT2_BOOK_SCALE=gpu``: the gpu branch's code, with its loops
and slices shrunk to seconds by rewriting the sizes listed in ``tests/gpu_tiny_sizes.toml`` in the test's copy
of the notebook (the chapters themselves carry only their "cpu" and "gpu" sizes; ``GPT2_BOOK_GPU_SIZE=full`` in
this test's environment runs the chapters' own gpu sizes), with ``from_pretrained("gpt2")`` resolved from a
random stand-in checkpoint (``tests/_standin.py``: GPT-2's 50,257-token vocabulary and 1,024-token
context, two small layers) in a temporary, offline Hugging Face cache. Outputs are not compared (they
depend on the random stand-in); every cell must run without an error. The executed copies go to a
temporary folder: the committed notebooks are never written.

On a machine without a GPU the kernel first installs a pretend GPU (``tests/_pretend_device.py``): the
chapter sees ``device == "cuda"``, every tensor stays on the CPU but remembers where it would be, and
mixing devices raises as it does on a real GPU (issue 23: ``torch.arange`` positions on the CPU for a
model on the GPU, a generator on the GPU for a model left on the CPU).

The §3 chapters also run at ``SCALE = "cpu"`` with ``GPT2_BOOK_MODEL=gpt2`` (a reader with a laptop and the
released 124M): the loader honours the name at any scale, and the CPU slices run on a model with GPT-2's
1,024-token context.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _standin import CONTEXT, VOCAB_SIZE, standin_env, write_standin_cache  # noqa: E402
from sync_notebooks import chapter_notebooks  # noqa: E402

CHAPTERS = [p.stem for p in chapter_notebooks()]
SECTION3 = ["language_modeling", "cbt_lambada_winograd", "reading_summarization", "translation_qa", "reproduce"]
SHRINK = tomllib.loads((ROOT / "tests" / "gpu_tiny_sizes.toml").read_text(encoding="utf-8"))["shrink"]
PRETEND_GPU_CELL = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
                    "import _pretend_device; _pretend_device.install()")


def shrink(nb, chapter: str) -> None:
    """Give ``chapter``'s gpu branch the small sizes of ``tests/gpu_tiny_sizes.toml`` (in this copy only)."""
    cells = {c.get("id"): c for c in nb.cells}
    for entry in (e for e in SHRINK if e["chapter"] == chapter):
        cell = cells.get(entry["cell"])
        assert cell is not None, f"tests/gpu_tiny_sizes.toml: {chapter}.ipynb has no cell {entry['cell']!r}"
        count = cell.source.count(entry["old"])
        assert count == 1, (f"tests/gpu_tiny_sizes.toml: {entry['old']!r} occurs {count} times in "
                            f"{chapter}.ipynb cell {entry['cell']}, not once")
        cell.source = cell.source.replace(entry["old"], entry["new"])


def test_every_shrink_entry_applies_to_its_chapter_once():
    """The table names existing chapters and cells, each size once, with a reason; the rewrite changes them."""
    assert SHRINK and {e["chapter"] for e in SHRINK} <= set(CHAPTERS)
    for chapter in sorted({e["chapter"] for e in SHRINK}):
        nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
        before = {c.get("id"): c.source for c in nb.cells}
        shrink(nb, chapter)
        changed = {c.get("id") for c in nb.cells if c.source != before[c.get("id")]}
        assert changed == {e["cell"] for e in SHRINK if e["chapter"] == chapter}
    assert all(e["why"].strip() and e["old"] != e["new"] for e in SHRINK)


def test_no_test_knob_in_code_a_reader_sees():
    """Readers see the two sizes they can choose (SCALE); the test harness's tiny mode lives in tests/ only."""
    for chapter in CHAPTERS:
        nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not re.search(r"GPU_TINY|GPU_SIZE", cell.source), f"{chapter}.ipynb cell {cell.get('id')}"


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


def _execute(nb, path: Path, tmp_path: Path, how: str) -> None:
    """Run ``nb`` (a copy of ``path``) in a fresh kernel in the chapter's folder; a failing cell fails the test
    with ``how`` in the message. The executed copy goes to ``tmp_path``, for a look after a failure."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.stem}.ipynb at {how}: {err}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / path.name)
    print(f"{path.stem}: {time.perf_counter() - start:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_at_scale_gpu(chapter, standin_cache, tmp_path, monkeypatch):
    size = os.environ.get("GPT2_BOOK_GPU_SIZE", "tiny")  # benchmarks/gpu_check.py --chapters-size full: "full"
    assert size in ("tiny", "full"), f"GPT2_BOOK_GPU_SIZE must be 'tiny' or 'full', not {size!r}"
    for key, value in {**standin_env(standin_cache), "GPT2_BOOK_SCALE": "gpu", "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    monkeypatch.delenv("GPT2_BOOK_MODEL", raising=False)
    path = ROOT / "book" / f"{chapter}.ipynb"
    nb = nbformat.read(path, as_version=4)
    if size == "tiny":
        shrink(nb, chapter)
    import torch

    pretend = not torch.cuda.is_available()  # on a real GPU, the real device check
    if pretend:
        nb.cells.insert(0, nbformat.v4.new_code_cell(PRETEND_GPU_CELL))
    nb.cells.append(nbformat.v4.new_code_cell('print(f"device={device}  SCALE={SCALE!r}")'))
    _execute(nb, path, tmp_path, f"SCALE='gpu' (GPT2_BOOK_GPU_SIZE={size})")
    expected = "device=cuda  SCALE='gpu'"  # on a GPU, or the pretend one
    assert expected in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.slow
@pytest.mark.parametrize("chapter", SECTION3)
def test_section3_chapter_runs_on_released_gpt2_at_scale_cpu(chapter, standin_cache, tmp_path, monkeypatch):
    """A reader on a laptop: ``SCALE = "cpu"`` slices with ``GPT2_BOOK_MODEL=gpt2`` (here the stand-in, with
    GPT-2's 1,024-token context), the chapter's own sizes, every cell; the results name the model."""
    for key, value in {**standin_env(standin_cache), "GPT2_BOOK_SCALE": "cpu", "GPT2_BOOK_MODEL": "gpt2",
                       "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(key, value)
    path = ROOT / "book" / f"{chapter}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'print(f"device={device}  SCALE={SCALE!r}  MODEL_NAME={MODEL_NAME!r}  '
        'context={model.config.block_size}  layers={model.config.n_layer}")'))
    _execute(nb, path, tmp_path, "SCALE='cpu' with GPT2_BOOK_MODEL=gpt2")
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"SCALE='cpu'  MODEL_NAME='gpt2'  context={CONTEXT}  layers=2" in last, last
    printed = "".join(o.get("text", "") for c in nb.cells[:-1] if c.cell_type == "code" for o in c.outputs)
    assert "gpt2" in printed and "webtext-tiny" not in printed  # every result is labelled with the model run


def test_knob_rejects_unknown_values(monkeypatch):
    """A typo in GPT2_BOOK_SCALE stops the set-up cell with a message naming it; no test knob is left in it."""
    from sync_notebooks import repository_url, setup_cell_source

    source = setup_cell_source(repository_url())
    assert "GPU_SIZE" not in source and "GPU_TINY" not in source
    monkeypatch.setenv("GPT2_BOOK_SCALE", "GPU")
    with pytest.raises(ValueError, match="GPT2_BOOK_SCALE must be"):
        exec(compile(source, "setup-cell", "exec"), {})
    for scale in ("cpu", "gpu"):
        monkeypatch.setenv("GPT2_BOOK_SCALE", scale)
        namespace: dict = {}
        exec(compile(source, "setup-cell", "exec"), namespace)
        assert namespace["SCALE"] == scale
