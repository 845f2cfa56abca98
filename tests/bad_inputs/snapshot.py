"""Snapshots of a folder's files, to assert that a failed (or refused) job changed nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


def snapshot(root: str | Path) -> dict[str, FileState]:
    """Every file and folder under ``root`` (relative path -> size, mtime, content hash).

    Folders are recorded too (as size -1) so that a created empty folder counts as a change.
    """
    root = Path(root)
    state: dict[str, FileState] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            state[rel + "/"] = FileState(-1, 0, "")
        else:
            data = path.read_bytes()
            state[rel] = FileState(
                len(data), path.stat().st_mtime_ns, hashlib.sha256(data).hexdigest()
            )
    return state


def changes(before: dict[str, FileState], after: dict[str, FileState]) -> dict[str, list[str]]:
    """``{"added": [...], "removed": [...], "modified": [...]}`` between two snapshots."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "modified": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


class Unchanged:
    """``with Unchanged(folder): ...`` asserts that nothing under ``folder`` changed.

    ``allow`` names relative paths that may be added (a command's declared outputs);
    every other addition, removal or modification fails the test.
    """

    def __init__(self, root: str | Path, *, allow: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.allow = set(allow)

    def __enter__(self) -> Unchanged:
        self.before = snapshot(self.root)
        return self

    def __exit__(self, *exc) -> None:
        diff = changes(self.before, snapshot(self.root))
        diff["added"] = [p for p in diff["added"] if p not in self.allow]
        assert diff == {"added": [], "removed": [], "modified": []}, diff
