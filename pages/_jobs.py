"""Helpers for the training page: job presets, which job to watch, loss history as chart columns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from storage.records import Job

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Preset:
    """Default budget and extra job params for the "Start training" form: ``minutes`` > 0 trains for
    that time (the steps follow from the machine's speed), else ``iterations`` steps."""

    iterations: int
    params: dict[str, Any]
    minutes: float = 0.0


# SPOCO_TRAIN_PRESET=tiny gives seconds-long jobs on a CPU (browser test, demos on a laptop).
PRESETS: dict[str, Preset] = {
    "default": Preset(iterations=200, params={}, minutes=DEFAULT_TRAIN_MINUTES),
    "tiny": Preset(iterations=6, params={"batch_size": 1, "patch_size": 64}),
}


def preset() -> Preset:
    return PRESETS.get(os.environ.get("SPOCO_TRAIN_PRESET", "default").strip().lower(), PRESETS["default"])


def watched_job(jobs: list[Job], kind: str = "train") -> Job | None:
    """The job of `kind` the progress panel follows: a queued/running one, else the most recent."""
    ordered = sorted((j for j in jobs if j.kind == kind), key=lambda j: j.created_at, reverse=True)
    for job in ordered:
        if job.status in ACTIVE:
            return job
    return ordered[0] if ordered else None


def loss_rows(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Loss history (one dict per logged iteration) as columns for st.line_chart, indexed by iteration."""
    columns: dict[str, list[float]] = {}
    for entry in history:
        for name, value in entry.items():
            if name in ("iteration", "its_per_s", "time") or not isinstance(value, int | float):
                continue
            columns.setdefault(name, [])
    rows: dict[str, list[float]] = {name: [] for name in columns}
    rows["iteration"] = []
    for entry in history:
        rows["iteration"].append(float(entry.get("iteration", len(rows["iteration"]))))
        for name in columns:
            value = entry.get(name)
            rows[name].append(float(value) if isinstance(value, int | float) else float("nan"))
    return rows
