"""Checks the data loaders share: user files read as strict UTF-8, bounded messages, numeric arguments.

Every error about a file names it, and where: ``file:line`` and the byte offset for text that is
not UTF-8, a NUL byte (binary data, or UTF-16 without a byte-order mark), a JSON path for JSON.
Messages stay short (a few hundred characters plus the path): they end up in logs and in
``error.json`` (as ``repr(error)``), so a quoted excerpt is cut with "…", never a whole line or file.

A UTF-8 byte-order mark at the start of a file is accepted and dropped.
"""

from __future__ import annotations

import codecs
import io
import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BOM = "\ufeff"
EXCERPT_CHARS = 60  # the longest quoted excerpt in a message, "…" included
_NEAR_BYTES = 12  # bytes shown before the offending byte


class DataFileError(ValueError):
    """A user data file that cannot be read as its format; the message names the file and where."""


class TextFileError(DataFileError):
    """A plain-text corpus file that is not UTF-8 text; the message names file:line and the byte offset."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with "…" when longer."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 1] + "…"


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or FileNotFoundError / IsADirectoryError naming it (``what``: "WikiANN file")."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected a {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def _hint(head: bytes) -> str:
    """What the start of a file that failed to decode suggests it is, and what to do."""
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "it looks like UTF-16 (it starts with a UTF-16 byte-order mark); re-encode as UTF-8"
    if head[:2] == b"\x1f\x8b":
        return "it looks gzip-compressed; decompress it first"
    if head[:4] == b"PK\x03\x04":
        return "it looks like a zip archive; extract it first"
    if b"\x00" in head:
        return "it looks like binary data or UTF-16 without a byte-order mark, not text; re-encode as UTF-8"
    return "re-encode as UTF-8 (e.g. `iconv -f latin1 -t utf-8`; Latin-1/Windows-1252 files fail like this)"


def first_problem(lines: Iterable[bytes]) -> tuple[int, str, bytes] | None:
    """Scan binary lines (as a file opened "rb" yields them) for the first byte that is not UTF-8
    text: (line, what is wrong and at which byte offset, the bytes around it), or None if all is well."""
    offset = 0
    for lineno, raw in enumerate(lines, 1):
        skip = len(codecs.BOM_UTF8) if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
        body = raw[skip:]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            at = e.start
            what = f"not UTF-8: byte 0x{body[at]:02x} at offset {offset + skip + at} ({e.reason})"
        else:
            if "\x00" not in text:
                offset += len(raw)
                continue
            at = body.index(b"\x00")
            what = f"not text: a NUL byte at offset {offset + skip + at}"
        return lineno, what, body[max(0, at - _NEAR_BYTES) : at + 4]
    return None


def not_text_error(path: Path, problem: tuple[int, str, bytes], head: bytes, error: type[Exception]) -> Exception:
    """``error`` for ``first_problem``'s finding, with a hint from the file's first bytes ``head``."""
    lineno, what, near = problem
    return error(f"{path}:{lineno}: {what}, near {excerpt(near)}; {_hint(head)}")


def decode_text(data: bytes, path: Path, error: type[Exception] = DataFileError) -> str:
    """A whole file's bytes as text: strict UTF-8, a leading BOM dropped; ``error`` (naming
    file:line and the byte offset) for bytes that are not UTF-8 or a NUL byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        problem = first_problem(io.BytesIO(data))  # lines split at b"\n" only, as a file opened "rb" does
        if problem is None:  # cannot happen: no UTF-8 sequence contains b"\n", so lines decode as the whole does
            raise error(f"{path}: not UTF-8 text; {_hint(data[:1024])}")
        raise not_text_error(path, problem, data[:1024], error)
    return text


def read_text(path: str | Path, what: str, error: type[Exception] = DataFileError) -> str:
    """A whole user file as text (see ``decode_text``); ``what`` names the format in messages."""
    path = check_file(path, what)
    return decode_text(path.read_bytes(), path, error)


def check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> None:
    """TypeError unless ``value`` is an int (not a bool; None when ``allow_none``), ValueError below ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        want = "an int or None" if allow_none else "an int"
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {excerpt(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_real(name: str, value: Any, *, low: float, high: float, open_low: bool = False, open_high: bool = False) -> None:
    """TypeError unless ``value`` is a real number (not a bool), ValueError outside the interval
    (``open_low``/``open_high`` exclude the ends) or for NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {excerpt(value)}")
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if math.isnan(value) or not (above and below):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
