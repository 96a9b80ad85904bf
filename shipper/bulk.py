"""One line → the document it becomes, the bulk request that creates documents, and what each item answered.

`_id = event.id` and op_type `create`: a re-shipped event answers 409, which counts as a
duplicate, never as a second copy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from elasticsearch import ApiError, Elasticsearch

from common.schema import daily_index, event_id, format_timestamp, stamp_ingested, stamp_sampling_key, utc_now


@dataclass(frozen=True)
class Document:
    index: str
    id: str
    source: dict[str, Any]


def to_document(data: bytes, index_prefix: str) -> Document | str:
    """The document one line becomes, or the reason it cannot become one."""
    try:
        event = json.loads(data)
    except ValueError as exc:  # includes invalid UTF-8
        return f"not valid JSON: {exc}"
    if not isinstance(event, dict):
        return f"not a JSON object but {type(event).__name__}"
    doc_id = event_id(event)
    if doc_id is None:
        return "no event.id"
    timestamp = event.get("@timestamp")
    try:
        index = daily_index(index_prefix, timestamp)
    except (TypeError, ValueError, AttributeError):
        return f"@timestamp {timestamp!r} is not an ISO-8601 time"
    return Document(index, doc_id, event)


def item_outcome(item: Mapping[str, Any]) -> tuple[str, str]:
    """("created" | "duplicate" | "retry" | "rejected", reason) for one bulk response item."""
    result = item.get("create") or next(iter(item.values()), {})
    status = int(result.get("status", 500))
    if status < 300:
        return "created", ""
    if status == 409:
        return "duplicate", ""
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}" if isinstance(error, dict) else f"{status} {error}"
    if status == 429 or status >= 500:
        return "retry", reason
    return "rejected", reason


def bulk_create(client: Elasticsearch, documents: list[Document]) -> list[Mapping[str, Any]]:
    """One bulk request creating `documents`, stamped with `event.ingested`; its items, in order."""
    operations: list[Any] = []
    now = format_timestamp(utc_now())
    for doc in documents:
        operations.append({"create": {"_index": doc.index, "_id": doc.id}})
        operations.append(stamp_sampling_key(stamp_ingested(doc.source, now)))
    response = client.bulk(operations=operations)
    items = response["items"]
    if len(items) != len(documents):
        raise ApiError(f"bulk answered {len(items)} items for {len(documents)} documents",
                       meta=response.meta, body=response.body)
    return items
