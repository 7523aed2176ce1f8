"""Errors the service raises; pages catch ``StudioError`` and show its message to the user."""

from __future__ import annotations


class StudioError(Exception):
    """Base class: every expected failure of a ``Studio`` call (the message is safe to show)."""


class InputError(StudioError):
    """Bad input from a user: unreadable upload, wrong mask shape, invalid name or parameter."""


class PermissionDenied(StudioError):
    """The acting user may not do this (wrong role, not a member, disabled, bad credentials)."""


class NotFound(StudioError):
    """The referenced row does not exist."""


class Conflict(StudioError):
    """The action clashes with the current state (e.g. a second training job for one project)."""


class LoginThrottled(StudioError):
    """Too many failed logins for this username; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = float(retry_after)
        super().__init__(message or f"too many failed logins; try again in {self.retry_after:.0f} s")
