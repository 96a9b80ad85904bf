"""Reading typed settings from environment variables, with errors that name the variable."""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

T = TypeVar("T")


def setting(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], Any] = str) -> T:
    """`env[name]` converted, or `default` when unset or empty; a value that does not convert is a
    ValueError naming the variable and its value (callers print it and exit 2)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None
