"""Checks on what callers hand the service API: ids and counts are whole numbers (a float id is
refused, not truncated), texts carry no control characters and have a bounded length.

``check_integer_arguments(Studio)`` wraps every public method that takes an ``*_id`` (or
``limit`` / ``prefer``) argument, so a method added later is covered without repeating the check.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import unicodedata
from collections.abc import Callable
from typing import Any

from storage.errors import InputError

MAX_SQL_INTEGER = 2**63 - 1
MAX_LIMIT = 100_000
MAX_PROJECT_NAME = 200
MAX_DESCRIPTION = 2_000


def whole_number(value: object, what: str, low: int = 0, high: int = MAX_SQL_INTEGER) -> int:
    """``value`` as an int in ``[low, high]``: ints and numpy integers, or a string of digits; a
    float (even ``3.0``), a bool or anything else is an ``InputError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | str):
        raise InputError(f"{what} must be a whole number, not {value!r:.40}")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise InputError(f"{what} must be a whole number, not {value!r:.40}")
        value = int(text)
    number = int(value)
    if not low <= number <= high:
        raise InputError(f"{what} must lie between {low} and {high}, not {number}")
    return number


def _integer_rule(name: str) -> tuple[int, int] | None:
    if name.endswith("_id") or name == "prefer":
        return (0, MAX_SQL_INTEGER)
    if name == "limit":
        return (0, MAX_LIMIT)
    return None


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    sig = inspect.signature(method)
    rules = {n: r for n in sig.parameters if (r := _integer_rule(n)) is not None}
    if not rules:
        return method

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return method(*args, **kwargs)  # the call's own TypeError
        for name, (low, high) in rules.items():
            value = bound.arguments.get(name)
            if value is not None:
                bound.arguments[name] = whole_number(value, name, low, high)
        return method(*bound.args, **bound.kwargs)

    return wrapper


def check_integer_arguments(cls: type) -> type:
    """Wrap each public method of ``cls`` that takes ids, ``limit`` or ``prefer`` (see module doc)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _checked(member))
    return cls


def _control(ch: str) -> bool:
    """Control and format characters (C0/C1 controls, bidi overrides, zero-width marks...)."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")


def single_line(value: object, what: str, max_chars: int) -> str:
    """Stripped text of 1..``max_chars`` characters without control or format characters."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > max_chars:
        raise InputError(f"{what} must be 1-{max_chars} characters")
    if any(_control(ch) for ch in text):
        raise InputError(f"{what} must not contain control characters")
    return text


def multi_line(value: object, what: str, max_chars: int) -> str:
    """Stripped text of at most ``max_chars`` characters; line breaks and tabs are the only control
    characters kept (``\\r\\n`` becomes ``\\n``). None is empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text")
    text = value.replace("\r\n", "\n").strip()
    if len(text) > max_chars:
        raise InputError(f"{what} must be at most {max_chars} characters, not {len(text)}")
    if any(_control(ch) and ch not in "\n\t" for ch in text):
        raise InputError(f"{what} must not contain control characters")
    return text
