"""lee.fileio: atomic file and directory writes leave the old content or the new, never a part or a
leftover; sha256_file equals hashlib's digest of the whole bytes."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

import lee.fileio as fileio
from lee.errors import InputError
from lee.fileio import atomic_dir, atomic_file, atomic_write_bytes, atomic_write_text, sha256_file


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------


def test_write_bytes_and_text_create_parents_and_leave_nothing_else(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    assert atomic_write_bytes(target, b"\x00\x01payload") == target
    assert target.read_bytes() == b"\x00\x01payload"
    atomic_write_text(tmp_path / "a" / "note.txt", "héllo ✓\n")
    assert (tmp_path / "a" / "note.txt").read_text(encoding="utf-8") == "héllo ✓\n"
    assert _names(tmp_path / "a") == ["b", "note.txt"]
    assert _names(tmp_path / "a" / "b") == ["out.bin"]


def test_replaces_existing_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _names(tmp_path) == ["f.txt"]


def test_failed_file_write_leaves_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "f.csv"
    target.write_text("old,content\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text("half a new fi")
            raise RuntimeError("disk full (injected)")
    assert target.read_text() == "old,content\n"
    assert _names(tmp_path) == ["f.csv"]


def test_failed_first_write_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "new.parquet") as tmp:
            tmp.write_bytes(b"PAR1")
            raise KeyboardInterrupt  # BaseException too: an interrupted write leaves nothing
    assert _names(tmp_path) == []


def test_temporary_keeps_the_suffix_so_writers_infer_the_format(tmp_path):
    """pandas infers compression from the path it is given: the temporary ends like the target."""
    target = tmp_path / "table.csv.gz"
    frame = pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]})
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".csv.gz")
        frame.to_csv(tmp, index=False)
    with gzip.open(target, "rt") as fh:  # really gzip, as the name promises
        assert fh.readline().strip() == "id,x"
    pd.testing.assert_frame_equal(pd.read_csv(target), frame)


# --------------------------------------------------------------------------------------------
# one directory
# --------------------------------------------------------------------------------------------


def test_atomic_dir_publishes_complete_directory(tmp_path):
    out = tmp_path / "deep" / "run"
    with atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".tmp-")
        assert not out.exists()  # nothing is visible until the body finished
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.npy").write_bytes(b"1")
        (tmp / "a.json").write_text("{}")
    assert _names(out) == ["a.json", "sub"]
    assert (out / "sub" / "x.npy").read_bytes() == b"1"
    assert _names(out.parent) == ["run"]


def test_atomic_dir_refuses_non_empty_target_without_overwrite(tmp_path):
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match=r"world: directory exists and is not empty; pass overwrite"):
        with atomic_dir(out):
            pytest.fail("the body must not run")
    assert _names(tmp_path) == ["world"] and (out / "keep.txt").read_text() == "mine"


def test_atomic_dir_accepts_empty_target_and_refuses_a_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty") as tmp:
        (tmp / "f").write_text("x")
    assert _names(tmp_path / "empty") == ["f"]
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InputError, match=r"plain: exists and is not a directory"):
        with atomic_dir(tmp_path / "plain"):
            pass


def test_atomic_dir_overwrite_replaces_everything(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.csv").write_text("old")
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "fresh.csv").write_text("new")
    assert _names(out) == ["fresh.csv"]
    assert _names(tmp_path) == ["run"]  # no .old-* or .tmp-* left


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_dir_write_leaves_nothing_and_keeps_old(tmp_path, overwrite):
    out = tmp_path / "run"
    if overwrite:
        out.mkdir()
        (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="injected"):
        with atomic_dir(out, overwrite=overwrite) as tmp:
            (tmp / "part.txt").write_text("part")
            raise RuntimeError("injected")
    assert _names(tmp_path) == (["run"] if overwrite else [])
    if overwrite:
        assert _names(out) == ["old.txt"] and (out / "old.txt").read_text() == "old"


def test_failed_swap_restores_old_directory(tmp_path, monkeypatch):
    """If the rename that publishes the new directory fails, the old one is moved back."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    def rename(src, dst):
        raise OSError("rename failed (injected)")

    monkeypatch.setattr(fileio, "rename_noreplace", rename)
    with pytest.raises(OSError, match="injected"):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert _names(tmp_path) == ["run"] and _names(out) == ["old.txt"]


def test_atomic_dir_fsyncs_every_file_before_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real = fileio.fsync_path

    def spy(path):
        synced.append(str(path))
        real(path)

    monkeypatch.setattr(fileio, "fsync_path", spy)
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a").write_text("a")
        (tmp / "b").write_text("b")
    tmp_files = {s for s in synced if ".tmp-run-" in s}
    assert {s.rsplit("/", 2)[-1] for s in tmp_files} >= {"a", "b", "sub"}
    assert synced[-1] == str(tmp_path)  # the parent's entry of the rename is flushed last


# --------------------------------------------------------------------------------------------
# sha256
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, (8 << 20) - 1, 8 << 20, (8 << 20) + 1, 3 * (8 << 20) + 12345])
def test_sha256_file_equals_hashlib(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# safe reads, refused targets, no-replace publication (issue 16)
# --------------------------------------------------------------------------------------------


def test_open_regular_refuses_fifos_devices_and_links_out_of_the_root(tmp_path):
    import os

    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")
    (root / "zero").symlink_to("/dev/zero")
    (tmp_path / "outside.txt").write_text("x")
    (root / "out").symlink_to(tmp_path / "outside.txt")
    (root / "ok").write_bytes(b"abc")
    for name, match in (("fifo", "is a FIFO"), ("zero", "resolves to /dev/zero, outside"), ("out", "outside")):
        with pytest.raises(fileio.UnsafeFileError, match=match):
            with fileio.open_regular(root / name, root=root):
                pass
    with pytest.raises(fileio.UnsafeFileError, match="is a character device"):
        sha256_file("/dev/zero")  # never hashed until the end of an endless device
    with fileio.open_regular(root / "ok", root=root) as (fd, st):
        assert st.st_size == 3 and fileio.sha256_fd(fd, 2) == hashlib.sha256(b"ab").hexdigest()


def test_writes_refuse_links_fifos_and_directories_as_targets(tmp_path):
    import os

    (tmp_path / "real.csv").write_text("keep")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "adir").mkdir()
    (tmp_path / "dirlink").symlink_to(tmp_path / "adir", target_is_directory=True)
    for target, match in (("link.csv", "is a symbolic link"), ("fifo.csv", "is a FIFO"), ("adir", "is a directory")):
        with pytest.raises(fileio.UnsafeFileError, match=match):
            atomic_write_text(tmp_path / target, "new")
    with pytest.raises(fileio.UnsafeFileError, match="is a symbolic link"):
        with atomic_dir(tmp_path / "dirlink", overwrite=True):
            pytest.fail("the body must not run")
    assert (tmp_path / "real.csv").read_text() == "keep" and (tmp_path / "link.csv").is_symlink()
    assert _names(tmp_path) == ["adir", "dirlink", "fifo.csv", "link.csv", "real.csv"]


def test_rename_noreplace_never_replaces(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        fileio.rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b" and (tmp_path / "a").exists()
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "f").write_text("mine")
    with pytest.raises(FileExistsError):
        fileio.rename_noreplace(tmp_path / "d1", tmp_path / "d2")
    fileio.rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


def test_atomic_dir_without_overwrite_loses_a_race_cleanly(tmp_path, monkeypatch):
    """Another writer publishes while this one writes: the publication is refused, the other
    writer's directory stays, nothing of this one is left behind."""
    out = tmp_path / "v" / "snap"
    with pytest.raises(fileio.TargetExistsError):
        with atomic_dir(out) as tmp:
            (tmp / "mine").write_text("mine")
            out.mkdir()
            (out / "theirs").write_text("theirs")
    assert _names(out) == ["theirs"] and _names(out.parent) == ["snap"]
