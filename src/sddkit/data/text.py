"""Reading text tables (score files, manifests, protocol files) as UTF-8 or, after its BOM, UTF-16.

Windows PowerShell's ``>`` writes a program's output as UTF-16 with a BOM, and so does Excel's "Unicode Text"
export (tab separated); spreadsheet exports put a UTF-8 BOM in front of the header. :func:`text_encoding` tells
them apart from a file's first bytes, and :func:`open_text` / :func:`read_text` read the file with it: UTF-16
strictly (a decoding error is a ``UnicodeDecodeError``), UTF-8 with its BOM dropped and bytes that are not UTF-8
kept as surrogate escapes (as ``sdd score`` writes such file names; strictly too for protocol files).
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path
from typing import IO

UTF16_BOMS: tuple[bytes, bytes] = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def text_encoding(head: bytes) -> str:
    """``'utf-16'`` when ``head`` (a file's first bytes) starts with a UTF-16 BOM, else ``'utf-8-sig'``."""
    return "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"


def is_utf16_text(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) is UTF-16 text with its BOM, as Windows PowerShell's ``>`` writes
    a list: printable characters, spaces, line breaks and format characters only, so that binary data (an MPEG
    frame) starting with the same two bytes is not."""
    if not head.startswith(UTF16_BOMS):
        return False
    try:
        text = codecs.getincrementaldecoder("utf-16")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(_is_text_char(c) for c in text)


def _is_text_char(c: str) -> bool:
    # besides printable characters and line breaks, text holds spaces other than ' ' (U+00A0 no-break space,
    # U+3000 ideographic space), which str.isprintable refuses, and format characters (U+200F right-to-left mark,
    # U+200D zero-width joiner): none of them is binary. Binary data decoded as UTF-16 still fails on its control
    # characters, lone surrogates (a UnicodeDecodeError) and private-use characters. U+FEFF (a BOM again) is not
    # taken: the \xff\xfe pairs of binary data decode to it
    return c.isprintable() or c in "\t\r\n" or (unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cf") and c != "\ufeff")


def not_text(exc: UnicodeDecodeError) -> str:
    """Why a file read by :func:`open_text` is not text, naming the encoding it was read in: ``not a UTF-8 text
    file (reason)``, or ``not a UTF-16 text file after its BOM (reason)`` for one whose first bytes were."""
    kind = "UTF-16" if exc.encoding.lower().replace("_", "-").startswith("utf-16") else "UTF-8"
    return f"not a {kind} text file{' after its BOM' if kind == 'UTF-16' else ''} ({exc.reason})"


def _errors(encoding: str) -> str:
    return "strict" if encoding == "utf-16" else "surrogateescape"


def open_text(path: str | Path, *, newline: str | None = "", strict: bool = False) -> IO[str]:
    """``path`` opened for reading text in its :func:`text_encoding` (``newline`` as :func:`open` takes it).

    ``strict``: bytes that are not UTF-8 raise ``UnicodeDecodeError`` in UTF-8 text too (protocol files, whose
    readers say in one line that the file is not text), instead of surviving as surrogate escapes."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(4096)
    encoding = text_encoding(head)
    if strict and not is_utf16_text(head):
        encoding = "utf-8-sig"  # binary data behind a UTF-16 BOM is refused as not UTF-8, not read as CJK text
    errors = "strict" if strict else _errors(encoding)
    return path.open("r", encoding=encoding, errors=errors, newline=newline)


def read_text(path: str | Path, *, keep_line_ends: bool = False) -> str:
    """The whole text of ``path`` in its :func:`text_encoding`; UTF-8 text with its line ends read as ``\\n``
    (as :meth:`pathlib.Path.read_text`) unless ``keep_line_ends`` (for a CSV reader, to which a ``\\r`` inside a
    quoted field is part of the field), UTF-16 text as decoded (a ``UnicodeDecodeError`` names the byte of
    the file)."""
    data = Path(path).read_bytes()
    encoding = text_encoding(data[:2])
    text = data.decode(encoding, _errors(encoding))
    if encoding == "utf-16" or keep_line_ends:
        return text
    return universal_line_ends(text)


def universal_line_ends(text: str) -> str:
    """``text`` with every ``\\r\\n`` and lone ``\\r`` read as ``\\n`` (as :meth:`pathlib.Path.read_text` reads
    them)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
