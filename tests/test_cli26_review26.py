"""Review 26 of the ``sdd`` entry point (src/sddkit/cli/main.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_CHILD = "import sys\nfrom sddkit.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


def _run_into_closed_pipe(*argv: str) -> tuple[int, str]:
    """Run ``sdd ARGV`` with stdout a pipe whose reader has already left (``sdd list gate | true``), stdout buffered
    as in a user's shell (no PYTHONUNBUFFERED): (exit status, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte: deterministic EPIPE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, *argv], stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120
        )
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize("argv", [("list", "gate"), ("--version",), ("list", "--help")])
def test_output_flushed_at_exit_into_a_closed_pipe_ends_quietly(argv):
    # a short listing (or the last KB of `sdd list | head -1`) is written by the interpreter's flush at exit, after
    # main() returned: "Exception ignored in: <_io.TextIOWrapper name='<stdout>'> BrokenPipeError", exit status 120
    status, err = _run_into_closed_pipe(*argv)
    assert status == 141 and "BrokenPipe" not in err and "Exception ignored" not in err, (status, err)


def test_an_error_into_a_closed_pipe_keeps_its_status_and_line():
    status, err = _run_into_closed_pipe("list", "nosuchfamily")
    assert status == 2 and "unknown registry family 'nosuchfamily'" in err and "BrokenPipe" not in err, err
