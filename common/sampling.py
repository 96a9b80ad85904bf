"""The sampling key of an ml-events document: one definition for the store's ingest pipeline
(Painless), the file shipper (stores without pipelines) and the log processor.

`sampling.key` = fmix32(String.hashCode(request_id)) >>> 1, an integer uniform on [0, 2^31):
Java's String.hashCode (over UTF-16 code units, 32-bit wrap-around) is what the Painless runtime
offers on every Elasticsearch/OpenSearch (no MessageDigest there), and MurmurHash3's 32-bit finalizer
(fmix32: shifts, xors and two multiplications, all int arithmetic that Painless does as Java does)
spreads its structured bits, so that every range [0, r·2^31) holds the share r of the keys. A
prediction and its feedback carry the same request_id, hence the same key: reading the documents
with `sampling.key < r·2^31` reads a uniform sample of rate r of the requests, with their labels
(docs/log-processor.md#sampled-reads).

Pure: no I/O. `sample_keys` is the vectorised form the processor uses on a page's join keys.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

FIELD = "sampling.key"            # where the key is stored (elasticsearch/ml-events.index-template.json)
SOURCE_FIELD = "request_id"       # what it is a hash of: the join key of the shipped monitors
SPACE = 1 << 31                   # keys are integers in [0, SPACE)
# The rates a window may be read at, largest first: a fixed ladder, so that a window that grows or
# shrinks a little keeps its rate (and its incremental reads) instead of a new rate every cycle.
LADDER = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)

_C1, _C2 = 0x85EBCA6B, 0xC2B2AE35
_MASK = 0xFFFFFFFF

# The ingest pipeline's script (elasticsearch/ml-events-ingested.ingest-pipeline.json holds this same
# text; tests/test_sampling.py checks both, and that the store computes what `sample_key` does).
# A document without a string request_id gets no key (and loses one a producer sent).
PAINLESS = (
    "def id = ctx.request_id; "
    "if (id instanceof String && !id.isEmpty()) { "
    "int h = id.hashCode(); h ^= h >>> 16; h *= -2048144789; h ^= h >>> 13; h *= -1028477387; h ^= h >>> 16; "
    "if (!(ctx.sampling instanceof Map)) { ctx.sampling = new HashMap(); } "
    "ctx.sampling.key = h >>> 1; "
    "} else if (ctx.sampling instanceof Map) { ctx.sampling.remove('key'); }"
)


def java_hash(text: str) -> int:
    """Java's String.hashCode as an unsigned 32-bit integer."""
    h = 0
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & _MASK
    return h


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * _C1) & _MASK
    h ^= h >> 13
    h = (h * _C2) & _MASK
    h ^= h >> 16
    return h


def sample_key(value: Any) -> int | None:
    """The key of one join key; None for anything but a non-empty string (no key is set then)."""
    if not isinstance(value, str) or not value:
        return None
    return _fmix(java_hash(value)) >> 1


def sample_keys(values: Sequence[Any]) -> np.ndarray:
    """`sample_key` of each value as int64, -1 where there is none; vectorised over columns of
    characters (one numpy pass per character position), a Python loop only for strings with
    characters beyond the Basic Multilingual Plane (two UTF-16 units each)."""
    n = len(values)
    out = np.full(n, -1, dtype=np.int64)
    ok = np.fromiter((type(v) is str and len(v) > 0 for v in values), dtype=bool, count=n)
    if not ok.any():
        return out
    strings = np.array(strings_of(values, ok), dtype=str)
    width = strings.dtype.itemsize // 4
    codes = strings.view(np.uint32).reshape(len(strings), width)
    lengths = np.char.str_len(strings)
    shortest = int(lengths.min())
    h = np.zeros(len(strings), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i in range(width):
            step = h * np.uint32(31) + codes[:, i]
            h = step if i < shortest else np.where(i < lengths, step, h)
        h = _fmix_array(h)
    keys = (h >> np.uint32(1)).astype(np.int64)
    wide = (codes > 0xFFFF).any(axis=1)
    nul = [j for j, v in enumerate(strings_of(values, ok)) if v[-1] == "\x00"]    # numpy drops trailing NULs
    wide[nul] = True
    if wide.any():
        originals = strings_of(values, ok)
        for j in np.flatnonzero(wide):
            keys[j] = sample_key(originals[j])
    out[ok] = keys
    return out


def strings_of(values: Sequence[Any], ok: np.ndarray) -> list[str]:
    return [v for v, good in zip(values, ok) if good]


def _fmix_array(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(_C1)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(_C2)
    return h ^ (h >> np.uint32(16))


def threshold(rate: float) -> int:
    """Keys below this are read at `rate`."""
    return SPACE if rate >= 1.0 else int(round(rate * SPACE))


def rate_for(count: int, max_rows: int) -> float:
    """The ladder's largest rate whose expected sample of `count` predictions is at most `max_rows`.
    A function of the count alone, so that the sample is the same whether a window was read whole or
    built up cycle by cycle; the ladder's steps keep a window that grows or shrinks a little at its rate."""
    return next((r for r in LADDER if count * r <= max_rows), LADDER[-1])
