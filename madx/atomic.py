"""Atomic file writes: write a temporary file beside the target, fsync, then ``os.replace``.

A reader (or a crashed writer's successor) sees either the old file or the complete new one,
never a partial file. Every file madx writes goes through here, and gets the mode any new file of
the user gets (``0o666`` less the umask): ``tempfile.mkstemp`` and safetensors' ``save_file`` both
create ``-rw-------`` files, which collaborators on a shared filesystem cannot read. The mode is
set after the writer ran, so a writer that replaces the temporary file does not undo it.

``atomic_save_pretrained`` does the same for a transformers ``save_pretrained`` (a model, its
tokenizer): everything is written into a temporary folder beside the target, given the user's
mode, and moved in file by file, ``config.json`` last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_mode() -> int:
    """The mode a new file of this user gets: ``0o666`` less the umask (read without changing it for long)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically, with the user's file mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # after the write: save_file replaces the file it is given by a 0600 one
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")  # paths as strings


def atomic_save_file(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """safetensors' ``save_file``, atomically and with the user's file mode."""
    from safetensors.torch import save_file

    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def atomic_save_pretrained(directory: str | os.PathLike, *objects) -> Path:
    """``obj.save_pretrained`` of each object (a model, a tokenizer) into ``directory``: written into a
    temporary folder beside it, given the user's file mode, then moved in file by file (each move atomic)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        for obj in objects:
            obj.save_pretrained(tmp)
        mode = file_mode()
        directory.mkdir(exist_ok=True)
        # config.json last: a folder holding it is a complete model (what loaders and ``madx`` commands look for)
        for source in sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: (p.name == "config.json", str(p))):
            os.chmod(source, mode)
            with open(source, "rb") as handle:
                os.fsync(handle.fileno())
            target = directory / source.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory
