"""What the README's install promises (issue 8): the Python version, the hub dependency, the order of the
set-up steps, the offline block, and the offline error text it quotes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _setup_section() -> str:
    return README[README.index("## Set-up"):README.index("## Offline use and data")]


def test_python_floor_is_the_same_everywhere_and_covers_tomllib():
    """The chapters and the CLI import tomllib (3.11+): pyproject, environment.yml and README say >= 3.11."""
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    env = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s*- python=3\.1[1-9]\b", env, re.M), "environment.yml pins a Python below 3.11"
    assert "Python 3.11 or newer" in _setup_section()
    users = [p.name for p in sorted((ROOT / "book").glob("*.ipynb")) if "import tomllib" in p.read_text(encoding="utf-8")]
    assert users, "no chapter imports tomllib any more: the 3.11 floor may be relaxed"
    assert sys.version_info >= (3, 11)


def test_huggingface_hub_is_a_core_dependency():
    """``GPT2.from_pretrained("gpt2")`` imports huggingface_hub: every install (core, [book], [test]) has it."""
    names = [re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("-", "_") for d in PYPROJECT["project"]["dependencies"]]
    assert "huggingface_hub" in names
    assert "from huggingface_hub import" in (ROOT / "gpt2lib" / "weights.py").read_text(encoding="utf-8")
    env = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert "huggingface_hub" in env


def test_cpu_torch_step_comes_before_both_setup_commands():
    section = _setup_section()
    cpu = section.index("download.pytorch.org/whl/cpu")
    assert cpu < section.index('pip install -e ".[book]"')
    assert cpu < section.index('pip install -e ".[test]"')


def test_offline_block_is_paste_ready(tmp_path):
    """The README's export line, pasted into bash in the repository root, names the mirror folders."""
    block = re.search(r"```bash\n(export GPT2LIB_DATA_MIRROR=[^\n]*)\n```", README)
    assert block, "README lacks the one-line offline export block"
    line = block.group(1)
    for var in ("TIKTOKEN_CACHE_DIR=", "HF_HUB_OFFLINE=1"):
        assert var in line
    script = f'{line}\nprintf "%s\\n" "$GPT2LIB_DATA_MIRROR" "$TIKTOKEN_CACHE_DIR" "$HF_HUB_OFFLINE"'
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    mirror, tiktoken_dir, offline = out.stdout.splitlines()
    assert Path(mirror) == ROOT / ".." / "shared" / "data"
    assert Path(tiktoken_dir) == ROOT / ".." / "shared" / "tiktoken_cache"
    assert offline == "1"


def test_readme_quotes_the_offline_error_that_the_example_gives(tmp_path):
    """Run the README's ``GPT2.from_pretrained("gpt2")`` offline with an empty hub cache: it fails with the
    error the README quotes, and that error says what to do offline."""
    code = "from gpt2lib import GPT2\nGPT2.from_pretrained('gpt2')\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode != 0
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("OSError: 'gpt2' is not a local folder and could not be fetched from the Hugging Face Hub")
    head, tail = message.split(" (", 1)[0], message.rsplit(". ", 1)[-1]
    assert "If you are offline" in tail
    assert head in README and tail in README


def test_every_data_file_of_the_package_is_shipped():
    """Files in gpt2lib/ that are not Python (the dataset table) are listed as package data, or an installed
    (non-editable) gpt2lib would lack them."""
    listed = set(PYPROJECT["tool"]["setuptools"]["package-data"]["gpt2lib"])
    data = {p.relative_to(ROOT / "gpt2lib").as_posix() for p in (ROOT / "gpt2lib").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data and data <= listed
