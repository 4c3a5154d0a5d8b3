"""``sdd``: the command-line entry point.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds an
argparse parser whose ``func(args) -> int`` runs it. Deliberate errors (``SddkitError``)
print one clear line and exit with status 2, as does a package sddkit depends on that the environment lacks
(:mod:`sddkit.cli.dependencies`); anything else is a bug and shows a traceback. Before a command
runs, the plugin modules of ``SDDKIT_PLUGINS`` and of the ``sddkit.plugins`` entry points are imported
(:mod:`sddkit.plugins`): components of one's own, registered for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from sddkit import __version__
from sddkit.cli.dependencies import missing_dependency_message
from sddkit.errors import SddkitError

# One module per subcommand, in the order `sdd --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "sddkit.cli.list_cmd",
    "sddkit.cli.describe_cmd",
    "sddkit.cli.train_cmd",
    "sddkit.cli.cv_cmd",
    "sddkit.cli.eval_cmd",
    "sddkit.cli.compare_cmd",
    "sddkit.cli.robustness_cmd",
    "sddkit.cli.demo_cmd",
    "sddkit.cli.score_cmd",
    "sddkit.cli.serve_cmd",
    "sddkit.cli.calibrate_cmd",
    "sddkit.cli.fuse_cmd",
    "sddkit.cli.export_cmd",
    "sddkit.cli.import_aasist_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``sdd`` parser: one subparser per module of :data:`COMMAND_MODULES`."""
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``sdd`` parser and each command's own parser, by command name."""
    parser = argparse.ArgumentParser(
        prog="sdd",
        description="sddkit: generalizable speech deepfake detection (higher score = more bona fide).",
        epilog="Components of your own: SDDKIT_PLUGINS=mylab.sdd_parts,other_pkg (module names, on PYTHONPATH) "
        "and the 'sddkit.plugins' entry points of installed packages are imported before every command.",
    )
    parser.add_argument("--version", action="version", version=f"sddkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        for action in command._actions:  # argparse marks a `nargs="*"` positional required when it has no default
            if not action.option_strings and action.nargs == argparse.ZERO_OR_MORE:
                action.required = False
    return parser, dict(sub.choices)


def parse_args(
    parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser], argv: list[str]
) -> argparse.Namespace:
    """Parse ``argv``, letting options and a command's list positionals interleave.

    Plain ``parse_args`` rejects ``sdd train RECIPE --print-config k=v`` and ``sdd score a.wav --out x.csv
    b.wav``: once an option splits a ``nargs="*"`` positional, argparse cannot resume it. The top-level
    parser has no option that takes a value, so its first token not starting with ``-`` is the command;
    its arguments go through the command's own parser with ``parse_intermixed_args`` (or, when they hold
    ``--``, plain ``parse_args``: options first, then ``--`` and the positionals).
    """
    command_at = next((i for i, tok in enumerate(argv) if not tok.startswith("-")), None)
    if command_at is not None and argv[command_at] not in commands:
        import difflib

        close = difflib.get_close_matches(argv[command_at], list(commands), n=1)
        if close:  # argparse's own "invalid choice" lists them all but says nothing of `sdd export`'s `export-onnx`
            parser.error(
                f"unknown command {argv[command_at]!r} (did you mean {close[0]!r}?); commands: {', '.join(commands)}"
            )
    # --help, --version, a missing or unknown command: argparse's own message. So is anything before the command
    # (`sdd --version train r.yaml`, `sdd -h list`, `sdd --bogus list`): it was dropped and the command ran
    if command_at is None or command_at > 0 or argv[command_at] not in commands:
        return parser.parse_args(argv)
    rest, sub = argv[command_at + 1 :], commands[argv[command_at]]
    # after "--" every token is positional (a file named "-x.wav"); parse_intermixed_args loses them
    args = sub.parse_args(rest) if "--" in rest else sub.parse_intermixed_args(rest)
    args.command = argv[command_at]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for a hub at run time, whatever the shell says
    try:  # building the parsers imports every command's module (not torch: a command loads it when it runs)
        args = parse_args(*_build_parsers(), sys.argv[1:] if argv is None else list(argv))
    except ImportError as exc:  # numpy missing: even `sdd --help` needs it
        if (message := missing_dependency_message(exc)) is None:
            raise
        print(f"sdd: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdd: interrupted", file=sys.stderr)
        return 130
    except SystemExit:  # --help, --version, a usage error: argparse wrote its text, which may meet a closed pipe
        if _reader_left():
            return 141
        raise
    try:
        with _terminate_as_interrupt():
            # in every process (torchrun's workers run this main too): a recipe or model directory naming a
            # component of one's own finds it registered, and `sdd list` shows it
            from sddkit.plugins import load_plugins

            load_plugins()
            status = int(args.func(args) or 0)
    except SddkitError as exc:
        print(f"sdd {args.command}: error: {exc}", file=sys.stderr)
        status = 2
    except ImportError as exc:  # after SddkitError: a plugin's failure (PluginError) has its own line
        if (message := missing_dependency_message(exc)) is None:
            raise  # an import of sddkit's own that fails is a bug: its traceback
        print(f"sdd {args.command}: error: {message}", file=sys.stderr)
        status = 2
    except Terminated:
        print(f"sdd {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"sdd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sdd list | head`: the reader left; stop quietly, as Unix tools do
        _quiet_stdout()
        return 141
    return 141 if _reader_left() and status == 0 else status


class Terminated(KeyboardInterrupt):
    """A SIGTERM (``kill``, ``timeout``, a batch scheduler's time limit, ``docker stop``), raised as Ctrl-C is."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Stop a command on SIGTERM as on Ctrl-C, by raising :class:`Terminated`, a ``KeyboardInterrupt``.

    Python's default for SIGTERM ends the process at once: no ``finally`` ran, so a training run said nothing of
    the checkpoint it keeps and of ``--resume``, and a write in progress left its temporary files behind. A second
    SIGTERM ends the process as before (the handler is reset by the first). Outside the main thread (where no
    handler can be set) the default stays."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if _quieted_sigchld:  # a SIGTERM came: torch's handler back (a caller that goes on, as tests do)
            chld = _quieted_sigchld.pop()
            signal.signal(signal.SIGCHLD, chld if chld is not None else signal.SIG_DFL)


_quieted_sigchld: list[Any] = []  # the SIGCHLD handler a SIGTERM replaced (at most one)


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "SIGCHLD") and not _quieted_sigchld:
        # torch's DataLoader learns of its worker processes' deaths by SIGCHLD: a SIGTERM sent to the whole process
        # group (a batch scheduler's, `kill -- -PGID`) ends them too, and its "DataLoader worker (pid N) is killed by
        # signal: Terminated" error, raised while this stop unwound, took its place (a traceback, status 1)
        _quieted_sigchld.append(signal.signal(signal.SIGCHLD, _ignore_signal))
    raise Terminated


def _ignore_signal(signum: int, frame: object) -> None:
    """A handler that does nothing (the children that end are reaped by whoever waits for them)."""


def _reader_left() -> bool:
    """Flush stdout now; True (stdout then quieted) when its reader has left.

    Output to a pipe is buffered: what a command printed last, or all of a short listing (`sdd list gate | true`,
    the last KB of `sdd list | head -1`), was written by the interpreter's flush at exit, after ``main`` returned,
    where a closed pipe printed "Exception ignored ... BrokenPipeError" and exited 120.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return True
    except (AttributeError, ValueError):  # no stdout (pythonw), or one already closed: nothing to flush
        return False
    return False


def _quiet_stdout() -> None:
    """Point stdout's file descriptor at the null device: the interpreter's final flush of it must not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
