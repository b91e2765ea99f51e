"""``python -m gpt2lib``: see :mod:`gpt2lib.cli`."""
import sys

try:
    from gpt2lib.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python imports the command line: one line, as during a command
    sys.stderr.write("gpt2lib: aborted by SIGINT while starting; nothing was written\n")
    sys.exit(130)

sys.exit(main())
