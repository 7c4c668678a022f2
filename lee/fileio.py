"""Writing files and directories atomically, and hashing files: the one home of both.

Atomic means a reader (or a crash) sees either the old content or the complete new one, never a
half-written file: everything is written to a hidden temporary path beside the target, flushed to
disk with fsync, and moved into place with one rename. On any error the temporary path is removed
and the target is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lee.errors import InputError

_HASH_BLOCK = 8 << 20


def _hidden_sibling(path: Path, tag: str) -> Path:
    """A hidden, unique name beside ``path`` (never listed by the snapshot store or the world loader)."""
    return path.parent / f".{tag}-{path.name}-{uuid.uuid4().hex[:8]}"


def _hidden_temp_file(path: Path) -> Path:
    """A hidden, unique name beside ``path`` that ends with ``path``'s name, so writers that infer
    a format or compression from the suffix (pandas' ``.csv.gz``) write what the target promises."""
    return path.parent / f".tmp-{uuid.uuid4().hex[:8]}-{path.name}"


def fsync_path(path: str | Path) -> None:
    """Flush a file's bytes, or a directory's entries (the names created or renamed in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target`` for any writer that takes a path (Arrow,
    pandas, numpy); on success it is fsynced and replaces ``target`` in one rename, on any error it
    is removed and ``target`` is untouched. The parent directory is created if needed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_temp_file(target)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)


def atomic_write_bytes(target: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_file`); returns ``target``."""
    target = Path(target)
    with atomic_file(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return target


def atomic_write_text(target: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically (see :func:`atomic_file`); returns ``target``."""
    return atomic_write_bytes(target, text.encode(encoding))


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (deepest first), so the rename that
    publishes ``root`` can never expose names whose bytes are not on disk yet."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


@contextmanager
def atomic_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``out`` to fill; on success it replaces ``out``.

    A non-empty ``out`` is refused (:class:`InputError`) unless ``overwrite``. On success every
    file is fsynced and the directory is renamed into place; an existing ``out`` is first moved
    aside under a hidden name and dropped only after the swap, so a failure keeps the old content.
    On any error the temporary directory is removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: directory exists and is not empty; pass overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_sibling(out, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if out.exists():
            old = _hidden_sibling(out, "old")
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed through one reused 8 MiB buffer (no per-block allocation)."""
    digest = hashlib.sha256()
    block = bytearray(_HASH_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(block):
            digest.update(view[:n])
    return digest.hexdigest()
