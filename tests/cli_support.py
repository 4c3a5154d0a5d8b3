"""What the CLI tests share: the check that a user error is one line on stderr."""

from __future__ import annotations


def one_line_error(capsys, command: str) -> str:
    """The stderr of a command that failed on a user error: ``sdd <command>: error: ...`` on one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"sdd {command}: error: ") and err.count("\n") == 1, err
    return err
