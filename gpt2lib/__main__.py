"""``python -m gpt2lib``: see :mod:`gpt2lib.cli`."""
import sys

from gpt2lib.cli import main

sys.exit(main())
