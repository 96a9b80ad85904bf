"""Lines that can never become documents (not JSON, no event.id, a 4xx from the store), kept with the reason.

Appended and fsynced before the offsets move past them, so a line is either in the store, in this
file, or still ahead of the saved offset: never nowhere.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from shipper.tail import Line


@dataclass(frozen=True)
class DeadLetter:
    source: Path
    line: Line
    reason: str

    def record(self) -> str:
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "file": str(self.source),
                           "offset": self.line.start, "reason": self.reason,
                           "line": self.line.data.decode("utf-8", "replace")}, ensure_ascii=False)


def append_dead_letters(path: Path, dead: list[DeadLetter]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(d.record() + "\n" for d in dead)
        handle.flush()
        os.fsync(handle.fileno())
