"""Search responses decoded straight into the `_source` fields a read needs.

A page of 10 000 events decodes ~5x faster into msgspec structs that hold the needed fields alone
than into dicts of every field, and its columns are then taken by attribute (docs/benchmarks.md).
The envelope stays plain dicts (`hits.hits[i]["sort"]`, `_scroll_id`, `hits.total`), so the store
pages through a typed response as through any other; only `_source` is a struct (None if absent).

What does not fit the types is not decoded here: `PageDecoder` returns None and the client decodes
the response as usual (common/store.py). That is an error body, and a page holding a document
whose value is not an object where a field path needs one (`"event": "x"` for event.id): that page
is read as dicts, and parse.py rejects the malformed document alone, as before. Leaves are `Any`
(a string where a number belongs is kept and counted by parse.py, never a failed page) unless the
read gives a field a type: a multi-class score vector is read as a tuple of so many floats, several
times cheaper to turn into an array than a list whose every value parse.py must check, and a
page where one vector does not fit is read as dicts and checked value by value.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, TypedDict, Union

import msgspec


Fields = Union[Sequence[str], Mapping[str, Any]]     # dotted paths, or paths with the type of their value


def field_types(fields: Fields) -> dict[str, Any]:
    """Each path with the type of its value; a bare path's is Any (whatever it is)."""
    return dict(fields) if isinstance(fields, Mapping) else dict.fromkeys(fields, Any)


class PageDecoder:
    """Callable: a search or scroll response's bytes → its dict with typed `_source`, or None."""

    def __init__(self, fields: Fields):
        document = _struct("Document", _tree(field_types(fields)))
        hit = TypedDict("Hit", {"_source": Optional[document], "sort": Any}, total=False)      # type: ignore[misc]
        hits = TypedDict("Hits", {"hits": list[hit], "total": Any}, total=False)              # type: ignore[misc,valid-type]
        response = TypedDict("Response", {"hits": hits, "_scroll_id": Any}, total=False)      # type: ignore[misc,valid-type]
        self._decoder = msgspec.json.Decoder(response)

    def __call__(self, data: bytes) -> dict[str, Any] | None:
        try:
            response = self._decoder.decode(data)
        except msgspec.DecodeError:       # its ValidationError too: a shape the types do not allow
            return None
        return response if "hits" in response else None      # an error body: decoded as usual


def _tree(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths as nested dicts, their leaves the values' types; a path asked for whole is a leaf
    even if others go deeper."""
    root: dict[str, Any] = {}
    for field, kind in fields.items():
        node = root
        *path, last = field.split(".")
        for key in path:
            child = node.get(key, {})
            if not isinstance(child, dict):   # asked for whole already
                break
            node = node.setdefault(key, child)
        else:
            node[last] = kind
    return root


def _struct(name: str, tree: dict[str, Any]) -> type[msgspec.Struct]:
    """A struct of the tree's keys (attribute names f0, f1, ...: JSON keys need not be identifiers;
    validate.Columns maps them back), every field optional and None by default."""
    fields = []
    for i, (key, sub) in enumerate(tree.items()):
        kind = Optional[_struct(f"{name}_{i}", sub) if isinstance(sub, dict) else sub]
        fields.append((f"f{i}", kind, None))
    return msgspec.defstruct(name, fields, rename={f"f{i}": key for i, key in enumerate(tree)})
