"""madx.data.checks: strict UTF-8 with file:line:offset errors, bounded excerpts, numeric arguments."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from madx.data.checks import DataFileError, check_int, check_real, decode_text, excerpt, read_text


def test_excerpt_is_bounded_and_marks_the_cut():
    assert excerpt("short") == "'short'"
    cut = excerpt("x" * 10_000)
    assert len(cut) == 60 and cut.endswith("…") and cut.startswith("'xxx")
    assert len(excerpt(b"\xff" * 100, 30)) == 30


def test_a_leading_bom_is_dropped_and_a_later_one_kept(tmp_path):
    p = tmp_path / "f.txt"
    assert decode_text("\ufeffab\n\ufeffc".encode(), p) == "ab\n\ufeffc"
    assert decode_text(b"", p) == ""


@pytest.mark.parametrize(
    "data, line, offset, what, hint",
    [
        ("ab\nCafé\n".encode("latin-1"), 2, 6, "byte 0xe9", "re-encode as UTF-8"),
        ("x\n".encode("utf-16"), 1, 0, "byte 0xff", "UTF-16"),  # with a UTF-16 byte-order mark
        ("x\n".encode("utf-16-le"), 1, 1, "NUL byte", "UTF-16 without a byte-order mark"),
        (gzip.compress(b"a\tO\n", mtime=0), 1, 1, "byte 0x8b", "decompress"),
        (b"PK\x03\x04\x14\x00\x00\x00", 1, 5, "NUL byte", "zip archive"),  # valid UTF-8 up to the NUL
        ("\ufeffab\ncd\nK\u00f6ln".encode()[:-3], 3, 10, "byte 0xc3", "re-encode"),  # cut inside ö; the BOM counts
        (b"ok\n" * 3 + b"\xed\xa0\x80\n", 4, 9, "byte 0xed", "re-encode"),  # an encoded surrogate
    ],
)
def test_not_text_names_file_line_offset_and_hints(tmp_path, data, line, offset, what, hint):
    p = tmp_path / "bad.txt"
    p.write_bytes(data)
    with pytest.raises(DataFileError) as e:
        read_text(p, "test file")
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert msg.startswith(f"{p}:{line}: ") and f"offset {offset}" in msg and what in msg and hint in msg, msg


def test_error_class_is_the_callers(tmp_path):
    class Mine(DataFileError):
        pass

    p = tmp_path / "bad.txt"
    p.write_bytes(b"\x80")
    with pytest.raises(Mine, match=r"bad\.txt:1: not UTF-8: byte 0x80 at offset 0"):
        read_text(p, "test file", Mine)


def test_a_huge_latin1_file_gives_a_short_message(tmp_path):
    # error.json stores repr(error): it must never carry the file's contents
    p = tmp_path / "big.txt"
    p.write_bytes(("é" * 100_000 + "\n").encode("latin-1") * 10)
    with pytest.raises(DataFileError) as e:
        read_text(p, "test file")
    assert len(repr(e.value)) < 300 + len(str(p))


def test_directory_and_missing_file_are_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path}: is a directory; expected a test file"):
        read_text(tmp_path, "test file")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such test file"):
        read_text(tmp_path / "nope.txt", "test file")


def test_check_int():
    check_int("n", 3, minimum=0)
    check_int("n", np.int64(3), minimum=0)
    check_int("n", None, allow_none=True)
    for bad in (True, 3.0, "3", None):
        with pytest.raises(TypeError, match=r"^n must be an int, got "):
            check_int("n", bad)
    with pytest.raises(TypeError, match="an int or None, got str"):
        check_int("n", "3", allow_none=True)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int("n", 0, minimum=1)


def test_check_real():
    check_real("p", 0.5, low=0, high=1, open_low=True, open_high=True)
    check_real("p", 0, low=0, high=1)
    check_real("p", np.float32(1.0), low=0, high=1)
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match="p must be a number"):
            check_real("p", bad, low=0, high=1)
    for bad, interval in ((0.0, r"\(0, 1\)"), (1.0, r"\(0, 1\)"), (math.nan, r"\(0, 1\)"), (-1e-9, r"\(0, 1\)")):
        with pytest.raises(ValueError, match=rf"p must be in {interval}, got"):
            check_real("p", bad, low=0, high=1, open_low=True, open_high=True)
    with pytest.raises(ValueError, match=r"\[0, 1\], got inf"):
        check_real("p", math.inf, low=0, high=1)
