"""Host memory of ``GPT2.from_pretrained``: peak resident memory above the start, per checkpoint size (issue 23).

For each shape (124M "gpt2", 355M "gpt2-medium"; ``--sizes`` takes more) a model with random weights is
saved with ``save_pretrained`` (``config.json`` + ``model.safetensors``, as on the Hugging Face Hub) into a
temporary folder. A fresh Python process then imports gpt2lib, notes its resident memory, loads the folder
with ``GPT2.from_pretrained`` and reports the peak resident memory (``VmHWM`` of ``/proc/self/status``; Linux) minus that start, next
to the file's size. A ratio near 1.0 means the load needs about one checkpoint's worth of host memory
(the model itself); free Colab has about 12.7 GB of host memory for a 6.4 GB gpt2-xl file.

    python benchmarks/bench_load_memory.py                 # 124M and 355M
    python benchmarks/bench_load_memory.py --sizes gpt2    # one size
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, torch
from gpt2lib.model import GPT2
def status(field):  # bytes; VmHWM is this process's peak (ru_maxrss would include the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
start = status("VmRSS")
model = GPT2.from_pretrained(sys.argv[1])
params = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"start": start, "peak": status("VmHWM"), "params_bytes": params}))
"""


def measure(name: str) -> dict:
    import torch

    from gpt2lib.model import GPT2, GPT2Config

    with tempfile.TemporaryDirectory(prefix="gpt2lib-loadmem-") as folder:
        torch.manual_seed(0)
        GPT2(GPT2Config.from_name(name)).save_pretrained(folder)
        size = (Path(folder) / "model.safetensors").stat().st_size
        out = subprocess.run([sys.executable, "-c", CHILD, folder], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    above = r["peak"] - r["start"]
    return {"name": name, "file_gib": size / 2**30, "peak_above_start_gib": above / 2**30,
            "ratio": above / size, "params_gib": r["params_bytes"] / 2**30}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["gpt2", "gpt2-medium"])
    args = parser.parse_args(argv)
    print(f"{'model':<12}{'file (GiB)':>11}{'peak RSS above start (GiB)':>28}{'peak / file':>12}")
    for name in args.sizes:
        m = measure(name)
        print(f"{m['name']:<12}{m['file_gib']:>11.2f}{m['peak_above_start_gib']:>28.2f}{m['ratio']:>12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
