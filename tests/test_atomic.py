"""One atomic-write helper: the new content or the old, never half, never a temp file left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from spoco_core.atomic import atomic_path, atomic_write, atomic_write_bytes


def test_write_replaces_the_file_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    assert atomic_write_bytes(target, b"new") == target
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def half(fh) -> None:
        fh.write(b"ne")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_serves_writers_that_take_a_path(tmp_path: Path) -> None:
    target = tmp_path / "b.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".b.txt.") and tmp.name.endswith(".tmp")
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done" and not tmp.exists()


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "nope" / "a.bin", b"x")
