"""Plain, immutable values returned by ``Studio``; pages never see database rows.

Timestamps are Unix seconds (float, UTC); ``None`` where something has not happened yet.
Users appear by username (``author``, ``created_by``) because that is what pages display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from storage import masks

ROLES = ("lead", "annotator")
KINDS = ("object", "background")
SOURCES = ("drawn", "accepted", "corrected")
JOB_KINDS = ("train", "predict")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_JOB_STATUSES = ("queued", "running")
SUGGESTION_STATUSES = ("open", "accepted", "corrected", "background", "skipped")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool
    disabled: bool


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    description: str
    created_at: float
    created_by: str | None


@dataclass(frozen=True)
class ImageInfo:
    id: int
    project_id: int
    name: str
    width: int
    height: int
    channels: int
    dtype: str
    n_objects: int
    """Live object labels on this image."""
    n_background: int
    """Live background marks on this image."""
    created_at: float
    complete: bool = False
    """Marked complete: every object labelled, the rest is background for training."""


@dataclass(frozen=True, eq=False)
class Annotation:
    id: int
    image_id: int
    kind: str
    """'object' or 'background'."""
    source: str
    """'drawn', 'accepted' (a suggestion taken as is) or 'corrected'."""
    author: str
    created_at: float
    seconds: float
    rle: dict = field(repr=False)
    """The mask, COCO run-length encoded (``storage.masks``)."""
    parent_id: int | None
    """The annotation this one replaced by an edit (its history), or None."""

    @cached_property
    def mask(self) -> np.ndarray:
        """bool (H, W), decoded on first use: listing an image's labels decodes none."""
        return masks.decode(self.rle)

    @property
    def pixels(self) -> int:
        """The mask's area, counted from its runs."""
        return masks.area(self.rle)


@dataclass(frozen=True)
class ModelVersion:
    id: int
    project_id: int
    version: int
    parent_id: int | None
    checkpoint: str
    """Path relative to the blob store."""
    created_at: float
    n_objects: int
    n_images: int
    metrics: dict
    is_current: bool


@dataclass(frozen=True)
class Job:
    id: int
    project_id: int
    kind: str
    status: str
    progress: float
    iteration: int
    total: int
    loss_history: list[dict]
    """One dict per report: ``iteration`` plus the loss terms (``total``, ``pull``, ...)."""
    heartbeat_at: float | None
    cancel_requested: bool
    error: str | None
    params: dict
    created_by: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    model_version_id: int | None
    """Train: the version it produced. Predict: the version it ran."""


@dataclass(frozen=True, eq=False)
class Suggestion:
    id: int
    image_id: int
    model_version_id: int
    object_id: int
    score: float
    """Instability in 0..1: higher means the model is less sure (label it first)."""
    bbox: tuple[int, int, int, int]
    """(y0, x0, y1, x1), end exclusive."""
    rle: dict = field(repr=False)
    """The object's mask, COCO run-length encoded (``storage.masks``)."""
    status: str

    @cached_property
    def mask(self) -> np.ndarray:
        """bool (H, W), decoded on first use: a page lists many suggestions and shows few."""
        return masks.decode(self.rle)
