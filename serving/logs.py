"""Application and access logs as JSON lines on stdout (what Filebeat ships to logs-serving-*)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from common.schema import SERVICE_NAME, format_timestamp


class JsonFormatter(logging.Formatter):
    """One JSON object per record: @timestamp, log.level, log.logger, message and `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": format_timestamp(datetime.fromtimestamp(record.created, timezone.utc)),
            "log": {"level": record.levelname.lower(), "logger": record.name},
            "service": {"name": SERVICE_NAME},
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["error"] = {"stack_trace": self.formatException(record.exc_info)}
        return json.dumps(doc, ensure_ascii=False, default=str)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for the serving process (also handed to gunicorn as logconfig_dict)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
            "feast": {"level": "WARNING"},
        },
    }
