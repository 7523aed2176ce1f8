"""Helpers for the training page: job presets, which job to watch, loss history as chart columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from storage.config import Settings
from storage.jobs import is_click_embedding
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
    """The training preset ``SPOCO_TRAIN_PRESET`` names (unknown names: the default)."""
    return PRESETS.get(Settings.from_env().train_preset, PRESETS["default"])


def watched_job(jobs: list[Job], kind: str = "train") -> Job | None:
    """The job of `kind` the progress panel follows: a queued/running one, else the most recent
    (a click's embedding job is no prediction of the project: never followed)."""
    ordered = sorted(
        (j for j in jobs if j.kind == kind and not is_click_embedding(j.params)),
        key=lambda j: j.created_at,
        reverse=True,
    )
    for job in ordered:
        if job.status in ACTIVE:
            return job
    return ordered[0] if ordered else None


def loss_rows(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Loss history (one dict per logged iteration) as columns for st.line_chart, indexed by iteration."""
    columns: dict[str, list[float]] = {}
    for entry in history:
        for name, value in entry.items():
            if name in NOT_LOSSES or not isinstance(value, int | float):
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


# What the numbers on the Train page mean, in words (the stored keys stay short).
METRIC_WORDS: dict[str, str] = {
    "label_iou": "overlap of predictions with the labelled objects (mean IoU, 1 = exact)",
    "label_recall50": "share of labelled objects the model finds (overlap at least half)",
    "map": "mean average precision on held-out labels",
    "mAP": "mean average precision on held-out labels",
    "final_loss": "training loss at the end (lower is better)",
    "iterations": "training steps",
    "train_seconds": "training time (seconds)",
    "device": "trained on",
    "warm_start_note": "note on the starting model",
    "checkpoint_error": "problem with the model file",
    "planned_iterations": "training steps planned",
    "held_back": "score on held-back labels (this version / the then current one)",
    "kept_back": "not made current because",
}
NOT_LOSSES = ("iteration", "its_per_s", "time", "seconds_left", "checking")
"""Keys of a job's progress points that are no loss term."""
LOSS_WORDS: dict[str, str] = {
    "total": "total loss",
    "pull": "pull: pixels towards their object's centre",
    "push": "push: objects apart from each other",
    "reg": "regularisation: centres near the origin",
    "instance": "object masks match the labels",
    "unlabelled": "unlabelled objects kept apart",
    "consistency": "agreement with the teacher model",
    "foreground": "foreground versus background",
}


def in_words(key: str, words: dict[str, str] = METRIC_WORDS) -> str:
    """The name a person reads for a stored metric or loss key."""
    return words.get(key, key.replace("_", " "))


def _latest(job: Job, key: str) -> float | None:
    for entry in reversed(job.loss_history):
        value = entry.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def checking(job: Job) -> bool:
    """Whether a running training job has made its steps and scores the held-back labels now."""
    return job.status == "running" and bool(job.loss_history) and "checking" in job.loss_history[-1]


def step_sentence(job: Job) -> str:
    """'step 40 of 900' once the plan is made (it never changes), before it 'measuring the speed'."""
    if job.kind == "train" and job.total <= 0:
        if job.status == "running":
            return f"step {job.iteration}, measuring the speed to plan the steps"
        return "steps planned once the speed is measured"
    return f"step {job.iteration} of {job.total}"


def speed(job: Job) -> float | None:
    """Training steps per second, as the worker last measured it (None before the first report)."""
    for entry in reversed(job.loss_history):
        rate = entry.get("its_per_s")
        if isinstance(rate, int | float) and rate > 0:
            return float(rate)
    return None


def seconds_left(job: Job, now: float) -> float | None:
    """Time a running training job still needs: the rest of its time budget, else the steps left at
    its last measured speed; None when nothing tells yet."""
    if job.status != "running" or checking(job):
        return None
    measured = _latest(job, "seconds_left")  # the planned steps left at the worker's measured speed
    if measured is not None:
        return max(0.0, measured)
    minutes = job.params.get("minutes")
    if isinstance(minutes, int | float) and minutes > 0 and job.started_at:
        return max(0.0, float(job.started_at) + 60.0 * minutes - now)
    rate = speed(job)
    if rate is None or job.total <= 0:
        return None
    return max(0, job.total - job.iteration) / rate


def held_back_text(metrics: dict) -> str | None:
    """'S on N labels (vK: S')': a version's held-back score beside the then current one's."""
    held = metrics.get("held_back")
    if not isinstance(held, dict) or held.get("score") is None:
        return None
    text = f"{held['score']:.3f} on {held.get('labels', 0)} labels"
    if held.get("current_score") is not None:
        text += f" (v{held.get('current_version')}: {held['current_score']:.3f})"
    return text


def fmt_duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min'."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def labels_sentence(counts: dict, started: bool, when: str) -> str:
    """'Trains on 12 objects and 3 background marks in 2 images, labels saved up to 14:05:09.'"""
    what = (
        f"{counts['objects']} object(s) and {counts['background']} background mark(s) "
        f"in {counts['images']} image(s)"
    )
    if started:
        return f"Trains on {what}: the labels saved up to {when}; later ones wait for the next training."
    return f"Will train on the labels saved when it starts; so far {what} (up to {when})."
