"""The shipper's read positions on disk, replaced atomically so a crash never leaves half a file.

A missing or unreadable offsets file means "start from the beginning": that re-ships events the
store already holds, which costs time but never duplicates (event.id is the document _id).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from shipper.tail import Position

log = logging.getLogger(__name__)


class OffsetStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Position]:
        try:
            data = json.loads(self.path.read_text())
            return {name: Position(int(p["inode"]), int(p["offset"])) for name, p in data["files"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s is unreadable (%s); shipping every file from its start again "
                        "(events already in the store count as duplicates)", self.path, exc)
            return {}

    def save(self, positions: dict[str, Position | None]) -> None:
        data = {"files": {name: {"inode": p.inode, "offset": p.offset}
                          for name, p in sorted(positions.items()) if p is not None}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
