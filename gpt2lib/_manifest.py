"""The dataset table of `gpt2lib.datasets`, read from the package data file ``gpt2lib/datasets.tsv``.

Columns (tab-separated, no header): name, relative path in the mirror layout, size in bytes, sha256, the URL the
file is downloaded from, the canonical public source, prefix flag ("prefix" = the file is the first `size` bytes of
the URL), license. Transcribed from the offline mirror's MANIFEST.tsv (tests/test_datasets.py checks the two
agree); edit both together.
"""
from importlib.resources import files

TABLE = files("gpt2lib").joinpath("datasets.tsv").read_text(encoding="utf-8")
