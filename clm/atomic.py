"""Atomic writes: a reader sees the old file or table, or the new one, never half of one.

Files: write a temporary sibling, flush it to disk, rename it over the target
(`atomic_path`, `write_text`, `write_bytes`, `write_json`).

Directories (a table of many files: raw/, features/): build the new one in a
staging sibling, then swap it in with two renames, old aside then new in
(`staged_dir`, or `new_staging_dir` then `replace_dir`). A process killed between the two renames leaves
no table at the target, the old one aside and the new one staged, named with the
writer's pid: `.<name>-old-<pid>-<tag>`, `.<name>-staging-<pid>-<tag>`. The next
writer of the same table (`recover_dir`, called by `staged_dir`) puts the old one
back before doing anything else, so a crash never loses a table; then it removes
what dead writers left. Leftovers of a live writer (its pid is running) are never
touched, so two writers do not trip over each other's files; the last to swap
wins, as with files.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clm.process import pid_alive

__all__ = [
    "atomic_path",
    "move_into_place",
    "new_staging_dir",
    "recover_dir",
    "replace_dir",
    "staged_dir",
    "write_bytes",
    "write_json",
    "write_text",
]


def _sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}-{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _dead_leftovers(target: Path, kind: str) -> list[Path]:
    """Siblings of `target` of this kind (`tmp`, `staging`, `old`) whose writer is gone."""
    prefix = f".{target.name}-{kind}-"
    found = []
    for path in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if not (pid.isdigit() and pid_alive(int(pid))):
            found.append(path)
    return found


def _fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces `target` (parents are
    created); on any exception it is deleted and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in _dead_leftovers(target, "tmp"):  # a killed writer's half-written file
        _remove(leftover)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(target.parent)


def move_into_place(finished: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename a fully written file (on the same file system) over `target` in one step,
    flushed to disk first, so a reader sees the old file or the new one, never half of it."""
    finished, target = Path(finished), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(finished, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(finished, target)
    _fsync_dir(target.parent)
    return target


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Replace `target` with `data` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace `target` with `text` atomically; returns the target path."""
    return write_bytes(target, text.encode(encoding))


def write_json(target: str | os.PathLike[str], payload: Any, **dumps: Any) -> Path:
    """Replace `target` with `payload` as JSON (default: indent 2, unknown types as str)."""
    dumps = {"indent": 2, "default": str, **dumps}
    return write_text(target, json.dumps(payload, **dumps) + "\n")


# --------------------------------------------------------------------------- directories


def recover_dir(target: str | os.PathLike[str]) -> None:
    """Repair what a killed writer of `target` left: put the old table back when the
    target is missing, and remove dead writers' staging and old copies."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    dead_old = _dead_leftovers(target, "old")
    if not target.exists() and dead_old:
        # Killed between "old aside" and "new in": the old table is the last complete one.
        newest = max(dead_old, key=lambda p: p.stat().st_ctime)
        os.rename(newest, target)
        _fsync_dir(target.parent)
        dead_old.remove(newest)
    for path in dead_old:
        _remove(path)
    for path in _dead_leftovers(target, "staging"):
        _remove(path)


def replace_dir(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Swap the complete directory `staging` in as `target` (a sibling of it), then delete
    the previous `target`. If the second rename fails, the previous one is put back."""
    staging, target = Path(staging), Path(target)
    old = _sibling(target, "old")
    had_target = target.exists()
    if had_target:
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        if had_target:
            os.rename(old, target)
        raise
    _fsync_dir(target.parent)
    if had_target:
        # Done; if this is interrupted, the next writer's recover_dir removes the rest.
        _remove(old)


def new_staging_dir(target: str | os.PathLike[str]) -> Path:
    """A fresh, empty staging directory beside `target` (after `recover_dir`), for a new
    table that `replace_dir` swaps in; the caller deletes it if the build fails."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    staging = _sibling(target, "staging")
    staging.mkdir()
    return staging


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new staging directory beside `target` to build the new table in; on
    success it replaces `target` (`replace_dir`), on any exception it is deleted and
    `target` is left as it was. Repairs a killed writer's leftovers first."""
    staging = new_staging_dir(target)
    try:
        yield staging
        replace_dir(staging, Path(target))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
