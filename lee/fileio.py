"""Writing files and directories atomically, opening files safely, and hashing them: the one home of all three.

Atomic means a reader (or a crash) sees either the old content or the complete new one, never a
half-written file: everything is written to a hidden temporary path beside the target, flushed to
disk with fsync, and moved into place with one rename. On any error the temporary path is removed
and the target is left as it was. A directory published without ``overwrite`` is renamed into
place with ``renameat2(RENAME_NOREPLACE)`` (glibc, Linux), so two writers racing for one target
can never replace each other: exactly one wins and the others get :class:`TargetExistsError`.

Safe opening (:func:`open_regular`) is for inputs an attacker or a flaky pipeline may have
shaped: a path is resolved, must stay inside a given root, and must be a regular file (never a
FIFO, whose open would block forever, a device such as ``/dev/zero``, which never ends, or a
socket); every read of it is then bounded by the size it had when it was opened. Output targets
(:func:`check_output_target`) must be regular files or directories: a symbolic link, a device or
``/dev/stdout`` is refused before anything is written, instead of being replaced or written through.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lee.errors import InputError

_HASH_BLOCK = 8 << 20


class UnsafeFileError(InputError):
    """A path that must not be read or written: not a regular file, or resolving outside its root.

    ``path`` is the path as given and ``reason`` the sentence after it, so that other layers can
    re-raise the same words under their own error type (the snapshot reader's ``SnapshotError``).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class TargetExistsError(InputError):
    """The target of a write without ``overwrite`` exists (or another writer published it first)."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: 'a regular file', 'a FIFO (named pipe)', 'a character device', ..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def resolve_inside(path: str | Path, root: str | Path) -> Path:
    """``path`` with every symbolic link resolved, checked to lie inside ``root`` (also resolved).

    Raises :class:`UnsafeFileError` when a link leads out of ``root`` (or the path cannot be
    resolved, e.g. a symlink loop); a path that does not exist is returned resolved as far as it goes.
    """
    path = Path(path)
    try:
        real = path.resolve(strict=False)
        base = Path(root).resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # ELOOP, ENAMETOOLONG
        raise UnsafeFileError(path, f"cannot be resolved ({exc})") from None
    if real != base and base not in real.parents:
        raise UnsafeFileError(path, f"resolves to {real}, outside {base}; symbolic links must not lead out of it")
    return real


def check_regular(path: str | Path, *, root: str | Path | None = None) -> os.stat_result:
    """``stat`` of ``path`` after checking that it is a regular file (inside ``root`` when given),
    without opening it; :class:`UnsafeFileError` names what it is instead (a FIFO, a device, a
    dangling link, a link out of the root). A missing file raises :class:`FileNotFoundError`."""
    path = Path(path)
    real = resolve_inside(path, root) if root is not None else path
    try:
        st = os.stat(real)
    except FileNotFoundError:
        if path.is_symlink():
            raise UnsafeFileError(path, f"is a dangling symbolic link (to {os.readlink(path)})") from None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(path, f"is {file_kind(st.st_mode)}, not a regular file; refusing to read it")
    return st


@contextmanager
def open_regular(path: str | Path, *, root: str | Path | None = None,
                 max_bytes: int | None = None) -> Iterator[tuple[int, os.stat_result]]:
    """Open ``path`` for reading only if it is a regular file (inside ``root`` when given); yield
    ``(fd, stat)`` and close it afterwards.

    The type is checked twice: with ``stat`` before opening (so a device is never even opened) and
    with ``fstat`` on the descriptor (so a file swapped for a FIFO in between is still caught; the
    open uses ``O_NONBLOCK``, under which opening a FIFO returns at once instead of waiting for a
    writer). ``max_bytes`` refuses larger files. Reads of the descriptor should stop at
    ``stat.st_size`` (:func:`sha256_fd` does), so a file that grows meanwhile cannot stall them.
    """
    path = Path(path)
    check_regular(path, root=root)
    real = resolve_inside(path, root) if root is not None else path
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(real, flags | (getattr(os, "O_NOFOLLOW", 0) if root is not None else 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, f"is {file_kind(st.st_mode)}, not a regular file; refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFileError(path, f"is {st.st_size:,} bytes; at most {max_bytes:,} are expected here")
        yield fd, st
    finally:
        os.close(fd)


def check_output_target(path: str | Path, *, directory: bool = False, stdout_hint: bool = False) -> Path:
    """Refuse, before anything is written, an output path that is a symbolic link, a device, a FIFO
    or a socket (or a directory where a file is wanted and the other way round); return the path.

    Writing through a link or replacing it with a regular file both surprise: the first writes
    where the user did not look, the second silently turns ``/dev/stdout`` or a device node into a
    file. ``stdout_hint`` adds that ``-`` writes to standard output (for commands that offer it).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    hint = "; give - to write to standard output" if stdout_hint else ""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(path, f"is a symbolic link (to {os.readlink(path)}); refusing to write through or "
                                    f"replace it: give the real path{hint}")
    want = stat.S_ISDIR if directory else stat.S_ISREG
    if not want(st.st_mode):
        if directory:
            raise UnsafeFileError(path, f"exists and is not a directory (it is {file_kind(st.st_mode)})")
        raise UnsafeFileError(path, f"is {file_kind(st.st_mode)}, not a regular file; refusing to write to it{hint}")
    return path


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


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2() -> object | None:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None


_RENAMEAT2 = _renameat2()


def rename_noreplace(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` to ``dst`` in one step that fails with :class:`FileExistsError` if ``dst`` exists.

    Linux's ``renameat2(RENAME_NOREPLACE)`` (through glibc) makes the check and the rename one
    atomic operation. Where it is missing, a directory is renamed with plain ``rename``, which
    fails on a non-empty target (only an empty directory could be replaced: nothing is lost), and
    a file is published with ``link`` + ``unlink`` (``link`` never replaces).
    """
    s, d = os.fsencode(src), os.fsencode(dst)
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, s, _AT_FDCWD, d, _RENAME_NOREPLACE) == 0:  # type: ignore[operator]
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), os.fsdecode(d))
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), os.fsdecode(s), None, os.fsdecode(d))
    if os.path.isdir(src) and not os.path.islink(src):
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(d)) from None
            raise
        return
    os.link(src, dst)
    os.unlink(src)


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target`` for any writer that takes a path (Arrow,
    pandas, numpy); on success it is fsynced and replaces ``target`` in one rename, on any error it
    is removed and ``target`` is untouched. The parent directory is created if needed. A target
    that is a symbolic link, a device or anything but a regular file is refused first."""
    target = check_output_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_temp_file(target)
    try:
        yield tmp
        fsync_path(tmp)
        check_output_target(target)  # a link or device put there while we wrote is not replaced either
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


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those this call created, deepest first."""
    created: list[Path] = []
    p = directory
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    directory.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first; a directory another writer has filled meanwhile stays
        try:
            d.rmdir()
        except OSError:
            return


def _exists_message(out: Path) -> str:
    return f"{out}: directory exists and is not empty; pass overwrite to replace it"


@contextmanager
def atomic_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``out`` to fill; on success it replaces ``out``.

    A non-empty ``out`` is refused (:class:`TargetExistsError`, an :class:`InputError`) unless
    ``overwrite``; so is an ``out`` that is a symbolic link or not a directory. Without
    ``overwrite`` the finished directory is published with :func:`rename_noreplace`, so a writer
    that got there first is never replaced: the check and the publication are one step. With
    ``overwrite``, an existing ``out`` is first moved aside under a hidden name and dropped only
    after the swap, so a failure keeps the old content. On success every file is fsynced before the
    rename; on any error the temporary directory, and parent directories this call created, are removed.
    """
    out = check_output_target(out, directory=True)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TargetExistsError(_exists_message(out))
    created = _make_parents(out.parent)
    tmp = _hidden_sibling(out, "tmp")
    try:
        tmp.mkdir()
    except FileNotFoundError:  # a racing writer's cleanup removed the parent we found: make it again
        created += _make_parents(out.parent)
        tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if overwrite:
            _swap_in(tmp, out)
        else:
            _publish_new(tmp, out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(created)
        raise


def _publish_new(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out`` unless ``out`` holds something: one atomic step, never a replacement."""
    try:
        rename_noreplace(tmp, out)
        return
    except FileExistsError:
        pass
    check_output_target(out, directory=True)
    try:  # only an empty directory may stand there; rename replaces it only while it stays empty
        if any(out.iterdir()):
            raise TargetExistsError(_exists_message(out))
        os.rename(tmp, out)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise TargetExistsError(_exists_message(out)) from None
        raise


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` with ``tmp``: move the old one aside, rename, then drop the old one.

    A writer racing for the same target is moved aside as well (last writer wins); if the rename
    fails the old content is moved back.
    """
    olds: list[Path] = []
    try:
        for _ in range(8):
            if os.path.lexists(out):
                old = _hidden_sibling(out, "old")
                try:
                    out.rename(old)
                except FileNotFoundError:
                    continue
                olds.append(old)
            try:
                rename_noreplace(tmp, out)
                break
            except FileExistsError:
                continue
        else:
            raise TargetExistsError(f"{out}: other writers kept replacing it; try again")
    except BaseException:
        if olds and not os.path.lexists(out):
            olds.pop(0).rename(out)
        raise
    finally:
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)


def sha256_fd(fd: int, nbytes: int) -> str:
    """Hex sha256 of the first ``nbytes`` bytes of an open file, streamed through one reused 8 MiB
    buffer; never reads past ``nbytes`` (a file that grows meanwhile cannot stall it)."""
    digest = hashlib.sha256()
    block = bytearray(_HASH_BLOCK)
    view = memoryview(block)
    left = nbytes
    os.lseek(fd, 0, os.SEEK_SET)
    while left > 0:
        n = os.readv(fd, [view[: min(left, _HASH_BLOCK)]])
        if n == 0:
            break
        digest.update(view[:n])
        left -= n
    return digest.hexdigest()


def sha256_file(path: str | Path, *, root: str | Path | None = None) -> str:
    """Hex sha256 of a regular file (see :func:`open_regular`: never a FIFO or device, inside
    ``root`` when given), streamed with bounded memory and bounded by the file's size."""
    with open_regular(path, root=root) as (fd, st):
        return sha256_fd(fd, st.st_size)
