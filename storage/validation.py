"""Held-back labels: a few labelled objects and background marks per project that training leaves
out, so that every new model version is scored against the current one, with the same score, on
labels neither learnt from; a version that scores worse is kept but not made current.

Which labels: per kind, the live labels with the smallest key, the SHA-256 of the project and the
label's first version (an edit keeps the choice), ``HOLD_SHARE`` of them up to ``MAX_OBJECTS`` /
``MAX_MARKS``; none while a project has fewer than ``MIN_OBJECTS`` objects (its first models need
every label). Smallest keys: a label held back stays held back as labels are added, so the
current version was not trained on the labels it is scored on (when the share grows by one, the
newly held label may have been trained on: the current version then scores high, the cautious
side). Worker-side scoring (imports spoco_core); choosing is plain SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlite_utils import Database

from storage import masks

MIN_OBJECTS = 8
"""Objects a project needs before any label is held back."""
HOLD_SHARE = 1 / 8
"""Share of each kind of label held back (rounded down)."""
MAX_OBJECTS = 8
MAX_MARKS = 4
CONTEXT = 64
"""px of image around the held-back labels that the scoring crop shows the network."""
MAX_CROP = 768
"""A crop holding all of an image's held-back labels is at most this large; else one per label."""
TOLERANCE = 0.02
"""A new version scoring less than the current one's score minus this is not made current (the
score of a handful of labels moves by about this much between two equally good models)."""


@dataclass(frozen=True)
class HeldLabel:
    annotation_id: int
    image_id: int
    kind: str  # "object" | "background"
    rle: dict


def _key(project_id: int, root_id: int) -> str:
    return hashlib.sha256(f"spoco-held-back:{int(project_id)}:{int(root_id)}".encode()).hexdigest()


def choose(db: Database, project_id: int) -> list[HeldLabel]:
    """The project's held-back labels (live rows), objects first; deterministic (see module doc)."""
    rows = list(
        db.query(
            "SELECT a.id, a.image_id, a.kind, a.parent_id, a.deleted_at FROM annotations a "
            "JOIN images i ON i.id = a.image_id WHERE i.project_id = ?",
            [int(project_id)],
        )
    )
    parent = {int(r["id"]): r["parent_id"] for r in rows}

    def root(ann_id: int) -> int:
        seen = 0
        while parent.get(ann_id) is not None and seen < 10_000:
            ann_id, seen = int(parent[ann_id]), seen + 1
        return ann_id

    live = [r for r in rows if r["deleted_at"] is None]
    objects = [r for r in live if r["kind"] == "object"]
    if len(objects) < MIN_OBJECTS:
        return []
    chosen: list[dict] = []
    for kind, cap in (("object", MAX_OBJECTS), ("background", MAX_MARKS)):
        of_kind = sorted(
            (r for r in live if r["kind"] == kind), key=lambda r: _key(project_id, root(r["id"]))
        )
        chosen += of_kind[: min(cap, int(len(of_kind) * HOLD_SHARE))]
    rles = {
        int(r["id"]): masks.from_json(r["rle"])
        for r in db.query(
            f"SELECT id, rle FROM annotations WHERE id IN ({','.join('?' * len(chosen))})",
            [int(r["id"]) for r in chosen],
        )
    } if chosen else {}  # fmt: skip
    return [HeldLabel(int(r["id"]), int(r["image_id"]), r["kind"], rles[int(r["id"])]) for r in chosen]


def leave_out(labels: np.ndarray, held: Sequence[HeldLabel], image_id: int) -> np.ndarray:
    """Training labels of one image with its held-back labels' pixels unknown (0): neither the
    object nor background there (also on an image marked complete, whose rest is background)."""
    out = np.asarray(labels).copy()
    for label in held:
        if label.image_id == int(image_id):
            out[masks.decode(label.rle).astype(bool)] = 0
    return out


@dataclass
class Crop:
    """A window of one image and the held-back labels in it (masks cut to the window)."""

    image_id: int
    window: tuple[int, int, int, int]  # y0, y1, x0, x1
    items: list[tuple[str, np.ndarray]]


def _grown(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = box
    h, w = shape
    return max(0, y0 - CONTEXT), min(h, y1 + CONTEXT), max(0, x0 - CONTEXT), min(w, x1 + CONTEXT)


def crops(held: Sequence[HeldLabel], shapes: dict[int, tuple[int, int]]) -> list[Crop]:
    """Scoring windows: per image one around all its held-back labels, or one per label where
    that window would be larger than ``MAX_CROP`` (a network pass and a clustering each)."""
    out: list[Crop] = []
    for image_id in sorted({h.image_id for h in held}):
        mine = [h for h in held if h.image_id == image_id]
        boxes = [masks.rle_box(h.rle) for h in mine]
        union = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        win = _grown(union, shapes[image_id])
        groups = [(win, mine)]
        if win[1] - win[0] > MAX_CROP or win[3] - win[2] > MAX_CROP:
            groups = [(_grown(b, shapes[image_id]), [h]) for b, h in zip(boxes, mine, strict=True)]
        for (y0, y1, x0, x1), labels in groups:
            items = [(h.kind, masks.decode(h.rle).astype(bool)[y0:y1, x0:x1]) for h in labels]
            out.append(Crop(image_id, (y0, y1, x0, x1), items))
    return out


def score(predictor: Any, windows: Sequence[Crop], image: Callable[[int], np.ndarray]) -> float | None:
    """Mean over the held-back labels of how well the model's segmentation of their window fits
    them: an object's best IoU with a predicted object, a mark's share of pixels predicted
    background. None without labels. ``image(id)``: the normalised image (C, H, W)."""
    values: list[float] = []
    for crop in windows:
        y0, y1, x0, x1 = crop.window
        pred = np.asarray(predictor.segment(np.ascontiguousarray(image(crop.image_id)[..., y0:y1, x0:x1])))
        for kind, mask in crop.items:
            if not mask.any():
                continue
            if kind == "background":
                values.append(float(np.mean(pred[mask] == 0)))
                continue
            ids, inter = np.unique(pred[mask], return_counts=True)
            best = 0.0
            for oid, n in zip(ids, inter, strict=True):
                if oid > 0:
                    best = max(best, float(n) / float(mask.sum() + np.count_nonzero(pred == oid) - n))
            values.append(best)
    return round(float(np.mean(values)), 4) if values else None


def kept_back_reason(new: float | None, current: float | None, n_labels: int) -> str | None:
    """Why a new version is not made current (it scored worse than the current one), or None."""
    if new is None or current is None or new >= current - TOLERANCE:
        return None
    return (
        f"scored {new:.3f} on {n_labels} held-back labels, the current version {current:.3f}: "
        "kept, not made current"
    )
