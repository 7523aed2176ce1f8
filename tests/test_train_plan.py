"""A time-budgeted run's plan: made once after measuring the speed, never changed, at least a
minimum of steps or the run says the machine was too busy; a warm start peaks lower."""

from __future__ import annotations

import time

import pytest

from spoco_core.train import CALIBRATION_STEPS, OVERTIME, ProgressEvent, Trainer
from tests.test_train import make_samples, tiny_config


@pytest.fixture(scope="module")
def samples():
    return make_samples(n=2, size=96)


def test_the_plan_never_changes_once_shown_even_when_the_machine_slows_down(samples):
    """Steps held up after the plan was made (a machine that got busy) do not move the total:
    the run ends at the plan or at OVERTIME x its budget, and the time left is counted down."""
    calls = {"n": 0}

    def busy_later() -> bool:
        calls["n"] += 1
        if calls["n"] > 3 * CALIBRATION_STEPS:
            time.sleep(0.05)
        return False

    events: list[ProgressEvent] = []
    trainer = Trainer(
        tiny_config(minutes=0.05, iterations=1), samples, progress=events.append, should_cancel=busy_later
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    shown = [e.total for e in events if e.total > 0]
    assert shown and len(set(shown)) == 1 and shown[0] == result.planned  # one plan, never moved
    assert all(e.seconds_left is None for e in events if e.total == 0)  # nothing promised before it
    assert all(e.seconds_left is not None and e.seconds_left >= 0 for e in events if e.total > 0)
    assert result.iterations_done <= result.planned
    assert time.perf_counter() - t0 < 0.05 * 60 * OVERTIME + 5  # cut at the overtime limit
    lrs = [h["lr"] for h in result.history]
    if result.iterations_done == result.planned:
        assert lrs[-1] < 0.2 * lrs[0]  # annealed over the plan it showed


def test_a_budget_buys_at_least_the_minimum_of_steps_or_says_too_busy(samples):
    """min_steps holds the plan up; a machine too slow to make them within OVERTIME x the budget
    ends the run short of them, flagged ``too_busy``."""
    events: list[ProgressEvent] = []
    run = Trainer(tiny_config(minutes=0.05, iterations=1, min_steps=40), samples, progress=events.append)
    fast = run.fit()
    assert all(e.total >= 40 for e in events if e.total > 0)  # no plan holds fewer
    assert fast.too_busy == (fast.iterations_done < 40)

    def slow() -> bool:
        time.sleep(0.2)  # a 0.6 s budget x OVERTIME holds ~4 of these
        return False

    busy = Trainer(tiny_config(minutes=0.01, iterations=1, min_steps=40), samples, should_cancel=slow).fit()
    assert busy.iterations_done < 40 and busy.too_busy
    untimed = Trainer(tiny_config(iterations=3, min_steps=40), samples).fit()
    assert untimed.iterations_done == 3 and not untimed.too_busy  # a step count is not a budget


def test_a_warm_start_peaks_at_the_scaled_learning_rate(samples, tmp_path):
    first = Trainer(tiny_config(iterations=2), samples)
    first.fit()
    first.save(tmp_path / "m.pt")
    warm = Trainer(tiny_config(iterations=4, warm_lr_scale=0.5), samples, init_checkpoint=tmp_path / "m.pt")
    lrs = [h["lr"] for h in warm.fit().history]
    assert lrs[0] == pytest.approx(0.5e-3)
    cold = Trainer(tiny_config(iterations=4, warm_lr_scale=0.5), samples)
    assert next(h["lr"] for h in cold.fit().history) == pytest.approx(1e-3)  # a fresh model: full rate
