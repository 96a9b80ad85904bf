"""Reading settings from environment variables, with errors that name the variable (every part)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A variable or flag has a value the part cannot use; the message names it."""


def env_number(env: Mapping[str, str], name: str, default: Any, kind: type, minimum: float,
               maximum: float | None = None) -> Any:
    """`kind(env[name])` within [minimum, maximum], or `default` when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError(f"{name}={raw!r} must be {bounds}")
    return value


def setting(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], Any] = str) -> T:
    """`convert(env[name])`, or `default` when unset or empty; a value that does not convert is a
    SettingsError naming the variable and its value."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc}") from None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def flag(raw: str) -> bool:
    """A yes/no setting (for `setting`): a typo is an error, not silently one or the other."""
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f"not a yes/no value (use one of {', '.join(_TRUE)} or {', '.join(_FALSE)})")
