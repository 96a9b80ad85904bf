"""The window frame's column names, and how one field's values become a typed column.

A leaf: it imports nothing from the processor, so that reading (read/parse.py), the tasks (tasks/)
and the evaluation all name the same columns without importing each other. The parsers here work on
one column of one page at a time, vectorised (numpy passes, not a Python loop per value), and mark
what they reject in a `Rejects`: the first reason wins per row (docs/log-processor.md lists them).
"""
from __future__ import annotations

from functools import cached_property, lru_cache
from operator import attrgetter, itemgetter
from typing import Any, Sequence

import msgspec
import numpy as np
import pandas as pd

REJECT_REASONS = ("missing_field", "not_a_number", "non_finite", "unknown_dataset", "duplicate",
                  "target_not_finite", "class_unknown", "scores_length", "sampling_key")

# Column names of the window frame; features keep their configured names (as in reference.parquet).
KEY, TIMESTAMP, PREDICTION, SCORE, TARGET = "request_id", "timestamp", "prediction", "prediction_score", "target"
# Bookkeeping columns: 64-bit hashes of event.id (the document's identity: re-reading an overlap must
# not count a document twice) and of the join key (what de-duplication and the label join compare,
# and all that is kept of the key: integers match several times faster than strings, and a held
# window of a million rows would keep ~100 MB of key strings alive), and the row's sampling rank
# (window.sample keeps the lowest ranks).
EID, KEY_HASH, RANK, REASON = "_eid", "_key", "_rank", "reason"
# The row's sampling key (common/sampling.py): the stored `sampling.key`, or computed from the join key
# where the document has none; a sampled read keeps the rows below its rate's threshold.
SAMPLING_KEY = "_skey"


UNKNOWN_SEGMENT = "unknown"      # a segment field that is absent, null, empty or not a string


def segment_column(field: str) -> str:
    """The window frame's column of a segment field (monitors.yaml `segments.fields`)."""
    return f"segment__{field}"


def segment_values(values: Sequence[Any]) -> np.ndarray:
    """A segment field's values as strings; absent, null, empty or not a string → `unknown` (a number
    is not taken for a name: `city: 7` is a producer's bug, counted under `unknown`, not a city "7")."""
    return np.array([v if type(v) is str and v else UNKNOWN_SEGMENT for v in values], dtype=object)


def score_column(cls: str) -> str:
    """The column of a multi-class monitor's score for `cls` (as in its reference.parquet)."""
    return f"score__{cls}"


class Columns:
    """The values at dotted paths of a page's documents (None where absent), each path level walked
    once and shared: the `event` objects serve event.id, event.dataset and event.ingested alike.

    A document is a dict, or a struct of the fields a read asked for (page_decoder.py: what the
    store usually hands over). A level is taken with operator.itemgetter / attrgetter, ~30 % faster
    than a checked comprehension, and walked again the checked way when some value lacks the key or
    is not an object (a malformed document)."""

    def __init__(self, docs: Sequence[Any]):
        self.docs = docs
        self._paths: dict[str, list[Any]] = {}

    @cached_property
    def typed(self) -> bool:
        """Decoded into structs: a field the read gave a type (source_fields) holds that type or None."""
        return any(isinstance(d, msgspec.Struct) for d in self.docs)

    def __call__(self, dotted: str) -> list[Any]:
        values = self._paths.get(dotted)
        if values is None:
            parent, _, key = dotted.rpartition(".")
            values = self._paths[dotted] = _level(self(parent) if parent else self.docs, key)
        return values


def _level(values: Sequence[Any], key: str) -> list[Any]:
    kind = type(next((v for v in values if v is not None), None))
    if issubclass(kind, msgspec.Struct):
        get = attrgetter(_attribute(kind, key))
        try:
            return list(map(get, values))
        except AttributeError:            # a None among the structs: that object was absent or null
            return [get(v) if type(v) is kind else None for v in values]
    try:
        return list(map(itemgetter(key), values))
    except (KeyError, TypeError, IndexError):
        # Decoded JSON objects are plain dicts: `isinstance(v, dict)`, not the ABC `Mapping` check,
        # which goes through the ABC machinery and once made this the hottest line of a cycle.
        return [v.get(key) if isinstance(v, dict) else None for v in values]


@lru_cache(maxsize=1024)
def _attribute(struct: type, key: str) -> str:
    """A decoded struct's attribute for a JSON key; KeyError if the read did not ask for that field."""
    return {f.encode_name: f.name for f in msgspec.structs.fields(struct)}[key]


_PLAIN_NUMBERS = {int, float}      # not bool: true/false is not a number here
_KIND = np.frompyfunc(lambda v: 0 if v is None else 1 if type(v) in (int, float) else 2, 1, 1)


def numbers(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(float values, missing mask, not-a-number mask, non-finite mask) of one column."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:        # the usual column: one C pass, no per-value call
        try:
            out = np.array(values, dtype=float)
        except OverflowError:                           # an integer beyond double range: the checked way
            pass
        else:
            none = np.zeros(len(out), dtype=bool)
            non_finite = ~np.isfinite(out)
            out[non_finite] = np.nan
            return out, none, none.copy(), non_finite
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    kind = _KIND(arr).astype(np.int8) if len(arr) else np.zeros(0, dtype=np.int8)
    missing, wrong = kind == 0, kind == 2
    out = np.full(len(arr), np.nan)
    ok = kind == 1
    out[ok] = arr[ok].astype(float)
    non_finite = ok & ~np.isfinite(out)
    out[non_finite] = np.nan
    return out, missing, wrong, non_finite


class Rejects:
    """First reason wins per row; rows already rejected are not counted twice."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, dtype=bool)
        self.reason = np.full(n, None, dtype=object)

    def add(self, reason: str, mask: np.ndarray) -> None:
        new = mask & ~self.bad
        if new.any():
            self.reason[new] = reason
            self.bad |= new

    def frame(self, eids: np.ndarray, times: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({EID: eids[self.bad], TIMESTAMP: times[self.bad], REASON: self.reason[self.bad]})


def number_column(values: Sequence[Any], rejects: Rejects) -> np.ndarray:
    out, missing, wrong, non_finite = numbers(values)
    rejects.add("missing_field", missing)
    rejects.add("not_a_number", wrong)
    rejects.add("non_finite", non_finite)
    return out


def class_column(values: Sequence[Any], classes: tuple[str, ...], rejects: Rejects) -> np.ndarray:
    """Class names as strings (an integer class is its decimal string); absent → missing_field,
    anything else outside `classes` → class_unknown. Each row holds the monitor's own string for its
    class, so a window holds a pointer per row rather than a million copies of a few names."""
    own = {c: c for c in classes}
    if set(map(type, values)) == {str} and set(values) <= own.keys():     # the usual page: known names only
        return np.array(list(map(own.__getitem__, values)), dtype=object)
    out = np.array([own.get(v if type(v) is str else str(v) if type(v) is int else None) for v in values], dtype=object)
    rejects.add("missing_field", np.array([v is None for v in values], dtype=bool))
    rejects.add("class_unknown", np.array([v is None for v in out], dtype=bool))
    return out


def score_vectors(values: Sequence[Any], width: int, rejects: Rejects, *, typed: bool = False) -> np.ndarray:
    """(rows, width) floats; a row that is absent → missing_field, not a list of `width` values →
    scores_length, holding a non-number or a non-finite number → not_a_number / non_finite.
    `typed`: the values come from a typed page (Columns.typed), where a vector is a tuple of floats."""
    if typed and values and None not in values:
        out = np.array(values, dtype=float)
        if out.shape == (len(values), width):
            return out
    out = np.full((len(values), width), np.nan)
    shape_ok = np.array([type(v) in (list, tuple) and len(v) == width for v in values], dtype=bool)
    rejects.add("missing_field", np.array([v is None for v in values], dtype=bool))
    rejects.add("scores_length", ~shape_ok)
    if shape_ok.any():
        flat = [x for v, ok in zip(values, shape_ok) if ok for x in v]
        numbers_, _missing, wrong, non_finite = numbers(flat)
        rows = np.flatnonzero(shape_ok)
        out[rows] = numbers_.reshape(-1, width)
        for reason, mask in (("not_a_number", (wrong | _missing).reshape(-1, width).any(axis=1)),
                             ("non_finite", non_finite.reshape(-1, width).any(axis=1))):
            bad = np.zeros(len(values), dtype=bool)
            bad[rows] = mask
            rejects.add(reason, bad)
    return out
