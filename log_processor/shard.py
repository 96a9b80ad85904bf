"""Which monitors this processor replica evaluates: `LOGPROC_SHARD=i/n` (docs/log-processor.md#scaling-out).

A monitor belongs to replica i of n when the hash of its name, modulo n, is i: the hash of Prometheus's
`hashmod` relabel action (the last 8 bytes of the name's MD5, big-endian), so every replica decides
alone, without talking to the others, and the same monitor always lands on the same replica. There is
no leader election: a dead replica's monitors stop being evaluated until it is back, and their
`MonitoringStale` / `LogProcessorDown` alerts say so.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < n (e.g. 0/2 and 1/2 for two replicas)")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`i/n`, as in LOGPROC_SHARD; anything else is a ValueError saying what is expected."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError("expected i/n with whole numbers, 0 <= i < n (e.g. 0/2 and 1/2 for two replicas)")
        return cls(int(index), int(count))

    def owns(self, monitor_name: str) -> bool:
        return hashmod(monitor_name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def hashmod(text: str, modulus: int) -> int:
    """Prometheus's `hashmod` of one label value (model/relabel: md5, low 8 bytes, big-endian)."""
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[8:], "big") % modulus
