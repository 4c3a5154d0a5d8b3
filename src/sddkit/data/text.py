"""Reading text tables (score files, manifests) as UTF-8 or, after its BOM, UTF-16.

Windows PowerShell's ``>`` writes a program's output as UTF-16 with a BOM; spreadsheet exports put a UTF-8
BOM in front of the header. :func:`text_encoding` tells them apart from a file's first bytes, and
:func:`open_text` / :func:`read_text` read the file with it: UTF-16 strictly (a decoding error is a
``UnicodeDecodeError``), UTF-8 with its BOM dropped and bytes that are not UTF-8 kept as surrogate escapes (as
``sdd score`` writes such file names).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import IO

UTF16_BOMS: tuple[bytes, bytes] = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def text_encoding(head: bytes) -> str:
    """``'utf-16'`` when ``head`` (a file's first bytes) starts with a UTF-16 BOM, else ``'utf-8-sig'``."""
    return "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"


def _errors(encoding: str) -> str:
    return "strict" if encoding == "utf-16" else "surrogateescape"


def open_text(path: str | Path, *, newline: str | None = "") -> IO[str]:
    """``path`` opened for reading text in its :func:`text_encoding` (``newline`` as :func:`open` takes it)."""
    path = Path(path)
    with path.open("rb") as fh:
        encoding = text_encoding(fh.read(2))
    return path.open("r", encoding=encoding, errors=_errors(encoding), newline=newline)


def read_text(path: str | Path) -> str:
    """The whole text of ``path`` in its :func:`text_encoding`; UTF-8 text with its line ends read as ``\\n``
    (as :meth:`pathlib.Path.read_text`), UTF-16 text as decoded (a ``UnicodeDecodeError`` names the byte of
    the file)."""
    data = Path(path).read_bytes()
    encoding = text_encoding(data[:2])
    text = data.decode(encoding, _errors(encoding))
    if encoding == "utf-16":
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")
