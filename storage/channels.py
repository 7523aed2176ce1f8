"""Channels per project: which image channels feed the model, and how each channel is shown.

- ``model_channels``: 0-based channel indices (1-3 of them) given to the model, in that order; empty
  means every channel as stored (then ``to_channels`` adapts the count to the network). An index an
  image does not have is left out for that image. The selection applies to training and prediction
  jobs started after it is saved; a model trained before keeps working (the count is adapted).
- ``display``: per channel a colour (``#rrggbb``), a contrast window as percentiles of that
  channel (``low``, ``high``) and whether it is shown; the display is the sum of the shown channels,
  each scaled to its window and tinted with its colour. Empty means the default rendering (gray,
  RGB as stored, two channels red and green).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
from sqlite_utils import Database

from storage.db import now, one
from storage.errors import InputError

MAX_MODEL_CHANNELS = 3
MAX_CHANNELS = 8
DEFAULT_COLOURS = ("#ff0000", "#00ff00", "#0000ff", "#ff00ff", "#00ffff", "#ffff00", "#ffffff", "#ff8000")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ChannelDisplay:
    colour: str = "#ffffff"
    low: float = 1.0
    high: float = 99.8
    visible: bool = True


@dataclass(frozen=True)
class ChannelSettings:
    model_channels: tuple[int, ...] = ()
    display: tuple[ChannelDisplay, ...] = field(default_factory=tuple)


def validate(settings: ChannelSettings) -> ChannelSettings:
    """The settings with numbers as floats/ints; ``InputError`` when they make no sense."""
    model = tuple(int(c) for c in settings.model_channels)
    if len(model) > MAX_MODEL_CHANNELS:
        raise InputError(f"at most {MAX_MODEL_CHANNELS} channels can feed the model, not {len(model)}")
    if len(set(model)) != len(model) or any(not 0 <= c < MAX_CHANNELS for c in model):
        raise InputError(f"model channels must be distinct indices 0..{MAX_CHANNELS - 1}, not {list(model)}")
    if len(settings.display) > MAX_CHANNELS:
        raise InputError(f"at most {MAX_CHANNELS} channels can be shown")
    display = []
    for i, d in enumerate(settings.display):
        low, high = float(d.low), float(d.high)
        if not _HEX.match(str(d.colour)):
            raise InputError(f"channel {i}: colour must be #rrggbb, not {d.colour!r}")
        if not 0.0 <= low < high <= 100.0:
            raise InputError(
                f"channel {i}: contrast needs 0 <= low < high <= 100 (percentiles), not {low}, {high}"
            )
        display.append(ChannelDisplay(str(d.colour).lower(), low, high, bool(d.visible)))
    if display and not any(d.visible for d in display):
        raise InputError("at least one channel must be shown")
    return ChannelSettings(model, tuple(display))


def to_json(settings: ChannelSettings) -> str:
    return json.dumps(
        {
            "model_channels": list(settings.model_channels),
            "display": [
                {"colour": d.colour, "low": d.low, "high": d.high, "visible": d.visible}
                for d in settings.display
            ],
        }
    )


def from_json(text: str) -> ChannelSettings:
    doc = json.loads(text)
    return ChannelSettings(
        tuple(int(c) for c in doc.get("model_channels", [])),
        tuple(ChannelDisplay(**d) for d in doc.get("display", [])),
    )


def get(db: Database, project_id: int) -> ChannelSettings:
    row = one(db, "SELECT settings FROM project_channels WHERE project_id = ?", [project_id])
    return from_json(row["settings"]) if row else ChannelSettings()


def put(db: Database, project_id: int, settings: ChannelSettings, user_id: int) -> None:
    """Inside the caller's transaction."""
    db.execute(
        "INSERT INTO project_channels (project_id, settings, updated_at, updated_by) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (project_id) DO UPDATE SET settings = excluded.settings, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        [project_id, to_json(settings), now(), user_id],
    )


def select_model_channels(img: np.ndarray, channels: tuple[int, ...]) -> np.ndarray:
    """``(C, H, W)`` -> the chosen channels, in order (indices the image lacks are left out; when
    none is left, the image as it is)."""
    keep = [c for c in channels if c < img.shape[0]]
    if not channels or not keep:
        return img
    return np.ascontiguousarray(img[keep])


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255.0


def render(raw: np.ndarray, display: tuple[ChannelDisplay, ...]) -> np.ndarray:
    """uint8 ``(H, W, 3)``: each shown channel of ``raw`` ``(C, H, W)`` scaled to its percentile
    window (clipped to 0..1), tinted with its colour, summed. Channels past ``display`` are hidden."""
    c, h, w = raw.shape
    out = np.zeros((h, w, 3), dtype=np.float32)
    for i in range(min(c, len(display))):
        d = display[i]
        if not d.visible:
            continue
        channel = np.nan_to_num(np.asarray(raw[i], dtype=np.float32))
        lo, hi = np.percentile(channel, (d.low, d.high))
        scaled = np.clip((channel - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(channel)
        out += scaled[..., None] * _rgb(d.colour)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def default_display(n_channels: int) -> tuple[ChannelDisplay, ...]:
    """A starting point for the settings form: one colour per channel, the usual contrast."""
    if n_channels == 1:
        return (ChannelDisplay("#ffffff"),)
    return tuple(ChannelDisplay(DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)]) for i in range(n_channels))
