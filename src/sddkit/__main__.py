"""``python -m sddkit``: the ``sdd`` command, where the environment's scripts folder is not on PATH (``pip install
--user`` puts ``sdd`` in ``~/.local/bin``) or to pick the interpreter (``/path/to/venv/bin/python -m sddkit``)."""

import sys

from sddkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
