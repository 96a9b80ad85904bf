"""Read complete lines from a JSON-lines file that a writer rotates to `.1`, `.2`, ...

The position is an (inode, offset) pair, not a path: after a rotation the bytes we have not read
yet live under `name.1` (or `name.2` if it rotated twice), and only the inode says which file
that is. A rotated file is read to its end before moving to the next newer one, so nothing
written before a rotation is skipped. Reading never advances the position by itself: the caller
commits a position once the lines are safely delivered.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    inode: int
    offset: int


@dataclass(frozen=True)
class Line:
    data: bytes  # without the trailing newline
    start: int   # byte offset of the line in its file
    end: int     # byte offset just after its newline


@dataclass(frozen=True)
class Chunk:
    path: Path          # the file the lines were read from (live or rotated)
    lines: list[Line]
    end: Position       # commit this once the lines are delivered


@dataclass(frozen=True)
class _Generation:
    path: Path
    inode: int
    size: int


class RotatingFileTail:
    """Follows `path` and its rotated generations, oldest unread data first."""

    def __init__(self, path: Path, position: Position | None = None) -> None:
        self.path = Path(path)
        self.position = position
        self._rotated = re.compile(re.escape(self.path.name) + r"\.(\d+)")

    def generations(self) -> list[_Generation]:
        """Existing files, oldest first: name.N ... name.1, name."""
        numbered = []
        if self.path.parent.is_dir():
            for entry in self.path.parent.iterdir():
                match = self._rotated.fullmatch(entry.name)
                if match:
                    numbered.append((int(match.group(1)), entry))
        paths = [p for _, p in sorted(numbered, reverse=True)] + [self.path]
        found = []
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append(_Generation(path, st.st_ino, st.st_size))
        return found

    def read(self, max_lines: int) -> Chunk | None:
        """Up to `max_lines` complete lines after the position, or None when there is nothing new.

        A partial last line of the live file is left for later (the writer is still writing it);
        in a rotated file nobody writes any more, so a partial last line counts as complete.
        """
        while True:
            gens = self.generations()
            if not gens:
                return None
            index = self._locate(gens)
            gen = gens[index]
            live = index == len(gens) - 1
            lines = _read_lines(gen, self.position.offset, max_lines, final=not live)
            if lines is None:  # the file was renamed between stat and open: look again next time
                return None
            if lines:
                return Chunk(gen.path, lines, Position(gen.inode, lines[-1].end))
            if live:
                return None
            # A rotated file read to its end: move on to the next newer generation.
            self.position = Position(gens[index + 1].inode, 0)

    def commit(self, position: Position) -> None:
        self.position = position

    def pending_bytes(self) -> int:
        """Bytes written but not yet committed, over every generation."""
        gens = self.generations()
        index = self._find(gens)
        if index is None:
            return sum(g.size for g in gens)
        return max(0, gens[index].size - self.position.offset) + sum(g.size for g in gens[index + 1:])

    def _find(self, gens: list[_Generation]) -> int | None:
        if self.position is None:
            return None
        for i, gen in enumerate(gens):
            if gen.inode == self.position.inode:
                return i
        return None

    def _locate(self, gens: list[_Generation]) -> int:
        """Index of the generation holding the position; fixes the position when it is gone."""
        index = self._find(gens)
        if index is None:
            if self.position is not None:
                log.warning("%s: the file being read (inode %d) is gone, rotated past the last kept "
                            "generation; continuing with the oldest one, %s",
                            self.path, self.position.inode, gens[0].path)
            self.position = Position(gens[0].inode, 0)
            return 0
        if gens[index].size < self.position.offset:
            log.warning("%s: truncated below the read offset %d; reading it again from the start",
                        gens[index].path, self.position.offset)
            self.position = Position(gens[index].inode, 0)
        return index


def _read_lines(gen: _Generation, offset: int, max_lines: int, final: bool) -> list[Line] | None:
    try:
        handle = open(gen.path, "rb")
    except FileNotFoundError:
        return None
    with handle:
        if os.fstat(handle.fileno()).st_ino != gen.inode:
            return None
        handle.seek(offset)
        lines: list[Line] = []
        position = offset
        while len(lines) < max_lines:
            raw = handle.readline()
            if not raw or (not raw.endswith(b"\n") and not final):
                break
            lines.append(Line(raw.rstrip(b"\r\n"), position, position + len(raw)))
            position += len(raw)
        return lines
