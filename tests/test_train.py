"""Trainer: tiny real models on synthetic sparse labels; checkpoints, warm start, cancel, EMA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from spoco_core.io import normalize_percentile
from spoco_core.model import UNetConfig
from spoco_core.synthetic import generate, sparsify
from spoco_core.train import (
    CALIBRATION_STEPS,
    ProgressEvent,
    TrainConfig,
    Trainer,
    cpu_has_bf16,
    load_checkpoint,
    resolve_device,
)


def make_samples(n: int = 4, size: int = 128, fraction: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic images with a fraction of objects labelled and a strip of background marks."""
    samples = []
    for i in range(n):
        image, dense = generate(size, seed=i)
        labels = sparsify(dense.astype(np.int32), fraction, seed=i)
        labels[(dense == 0) & (np.arange(size)[:, None] < 8)] = -1
        samples.append((normalize_percentile(image)[None], labels))
    return samples


def tiny_config(**kw) -> TrainConfig:
    base = {
        "iterations": 40,
        "batch_size": 2,
        "patch_size": 48,
        "lr": 1e-3,
        "log_every": 1,
        "device": "cpu",
        "model": UNetConfig(embedding_dim=8, base_channels=8, depth=2),
    }
    base.update(kw)
    return TrainConfig(**base)


def totals(history: list[dict]) -> np.ndarray:
    return np.array([h["total"] for h in history])


@pytest.fixture(scope="module")
def samples():
    return make_samples()


@pytest.fixture(scope="module")
def trained(samples, tmp_path_factory):
    """One 40-iteration run shared by the tests that only read its result."""
    torch.set_num_threads(1)  # module fixtures run before the per-test thread setting
    events: list[ProgressEvent] = []
    trainer = Trainer(tiny_config(ema_momentum=0.9), samples, progress=events.append)
    initial = copy.deepcopy(trainer.student.state_dict())
    result = trainer.fit()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    trainer.save(path, meta={"note": "first", "n": 4})
    return trainer, result, events, path, initial


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("amp", [True, False])
def test_cpu_precision_follows_the_hardware_and_still_learns(samples, amp):
    """amp on the CPU means bfloat16 autocast where the CPU has it natively, float32 elsewhere;
    either way the weights stay float32 and the loss falls."""
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(amp=amp, iterations=30, log_every=30, seed=1), samples)
    assert trainer.amp_dtype == (torch.bfloat16 if amp and cpu_has_bf16() else None)
    first = np.mean([trainer.step()["total"] for _ in range(5)])
    for _ in range(20):
        trainer.step()
    last = np.mean([trainer.step()["total"] for _ in range(5)])
    assert last < first
    assert all(p.dtype == torch.float32 for p in trainer.student.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.teacher.parameters())


def test_config_round_trips_through_dict():
    cfg = tiny_config(seed=7)
    cfg.loss.w_consistency = 0.0
    back = TrainConfig.from_dict({**cfg.to_dict(), "unknown_future_key": 1})
    assert back == cfg


def test_configs_from_before_coordinates_load_without_them():
    old = tiny_config().to_dict()
    del old["model"]["coord_scale"]  # what checkpoints written before coord_scale existed hold
    assert TrainConfig.from_dict(old).model.coord_scale == 0.0
    assert TrainConfig.from_dict(tiny_config().to_dict()).model.coord_scale == UNetConfig().coord_scale


def test_configs_from_before_cores_keep_whole_object_foreground():
    old = tiny_config().to_dict()
    del old["loss"]["core_margin"]  # checkpoints written before core_margin existed
    assert TrainConfig.from_dict(old).loss.core_margin == 0
    cfg = tiny_config()
    cfg.loss.core_margin = 2
    assert TrainConfig.from_dict(cfg.to_dict()).loss.core_margin == 2


def test_loss_falls(trained):
    _, result, _, _, _ = trained
    assert result.iterations_done == 40 and not result.cancelled
    t = totals(result.history)
    assert np.isfinite(t).all()
    # half the labelled-centred patches sit on a background mark (few object pixels), so a step's
    # total varies more than the trend over 40 steps of batch 2: compare means of ten
    assert t[-10:].mean() < 0.9 * t[:10].mean()
    for term in ("pull", "foreground"):  # the embedding and the foreground head both learn
        first, last = (np.mean([h[term] for h in part]) for part in (result.history[:5], result.history[-5:]))
        assert last < 0.9 * first, term
    assert {"pull", "push", "instance", "unlabelled", "consistency", "foreground"} <= result.history[0].keys()


def test_progress_events(trained):
    _, _, events, _, _ = trained
    assert [e.iteration for e in events] == list(range(1, 41))
    assert all(e.total == 40 and e.its_per_s > 0 and np.isfinite(e.losses["total"]) for e in events)


def test_ema_teacher_trails_the_student(trained):
    trainer, _, _, _, initial = trained
    student, teacher = trainer.student.state_dict(), trainer.teacher.state_dict()
    keys = [k for k, v in student.items() if v.dtype.is_floating_point]

    def dist(a, b):
        return sum(float((a[k] - b[k]).square().sum()) for k in keys) ** 0.5

    assert dist(student, teacher) > 0
    assert dist(student, teacher) < dist(student, initial)  # far closer to the student than to init
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def test_checkpoint_round_trip(trained):
    trainer, _, _, path, _ = trained
    ckpt = load_checkpoint(path, device="cpu")
    assert ckpt.iteration == 40
    assert ckpt.meta == {"note": "first", "n": 4}
    assert ckpt.config == trainer.config
    assert ckpt.foreground_trained
    for ours, theirs in ((trainer.student, ckpt.student), (trainer.teacher, ckpt.teacher)):
        for k, v in ours.state_dict().items():
            assert torch.equal(v, theirs.state_dict()[k]), k
    x = torch.from_numpy(make_samples(1)[0][0])[None]
    with torch.no_grad():
        assert torch.allclose(trainer.student.eval()(x)[0], ckpt.student(x)[0])


def test_warm_start_continues(trained, samples, tmp_path):
    trainer, result, _, path, _ = trained
    warm = Trainer(tiny_config(iterations=5, ema_momentum=0.9, seed=3), samples, init_checkpoint=path)
    assert warm.iteration == 40
    for k, v in trainer.student.state_dict().items():
        assert torch.equal(v, warm.student.state_dict()[k])
    assert warm.optimizer.state  # Adam moments carried over
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # schedule restarts
    fresh = Trainer(tiny_config(iterations=5, seed=3), samples)
    warm_first = totals(warm.fit().history)[:3].mean()
    fresh_first = totals(fresh.fit().history)[:3].mean()
    previous_last = totals(result.history)[-5:].mean()
    assert abs(warm_first - previous_last) < abs(warm_first - fresh_first)
    out = tmp_path / "warm.pt"
    warm.save(out)
    assert load_checkpoint(out, "cpu").iteration == 45


def test_warm_start_uses_the_checkpoint_architecture(trained, samples):
    _, _, _, path, _ = trained
    cfg = tiny_config(iterations=1, model=UNetConfig(embedding_dim=4, base_channels=4, depth=3))
    warm = Trainer(cfg, samples, init_checkpoint=path)
    assert warm.student.config.embedding_dim == 8 and warm.student.config.depth == 2


def test_cancel_stops_within_one_iteration(samples):
    calls = {"n": 0}
    stop_after = 3

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after

    events: list[ProgressEvent] = []
    trainer = Trainer(
        tiny_config(iterations=50, log_every=10), samples, progress=events.append, should_cancel=should_cancel
    )
    result = trainer.fit()
    assert result.cancelled
    assert result.iterations_done == stop_after == trainer.iteration
    assert len(result.history) == stop_after
    assert events and events[-1].iteration == stop_after  # the partial window is still reported


def test_save_is_atomic(trained, tmp_path):
    trainer, _, _, _, _ = trained
    path = tmp_path / "m.pt"
    trainer.save(path, meta={"v": 1})
    trainer.save(path, meta={"v": 2})  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert load_checkpoint(path, "cpu").meta == {"v": 2}
    with pytest.raises(TypeError):  # a meta value torch cannot pickle: the old file must survive
        trainer.save(path, meta={"bad": (i for i in range(3))})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert load_checkpoint(path, "cpu").meta == {"v": 2}


def test_bad_checkpoints_raise_value_error(trained, tmp_path):
    trainer, _, _, path, _ = trained
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    newer = tmp_path / "newer.pt"
    torch.save({**trainer.state_dict(), "format_version": 99}, newer)
    for bad in (garbage, truncated, tmp_path / "missing.pt"):
        with pytest.raises(ValueError, match=bad.name):
            load_checkpoint(bad, "cpu")
    with pytest.raises(ValueError, match="format_version"):
        load_checkpoint(newer, "cpu")


def test_samples_without_labels(samples):
    image = samples[0][0]
    with pytest.raises(ValueError, match="labelled"):
        Trainer(tiny_config(), [(image, np.zeros(image.shape[1:], np.int32))])
    trainer = Trainer(tiny_config(), [samples[0], (image, np.zeros(image.shape[1:], np.int32))])
    assert len(trainer.samples) == 1


def test_channels_converted_and_foreground_flag(samples):
    rgb = [(np.repeat(img, 3, axis=0), np.where(lab < 0, 0, lab)) for img, lab in samples[:2]]
    trainer = Trainer(tiny_config(iterations=2), rgb)
    assert all(img.shape[0] == 1 for img, _ in trainer.samples)
    assert not trainer.foreground_trained  # no background marks: the head learnt nothing
    assert trainer.fit().iterations_done == 2


def test_marks_on_open_background_reach_the_training_windows():
    """One object in a corner and a mark drawn far away on open background (where a model taught
    elsewhere saw objects): the Trainer centres windows on that mark too, so the head learns it."""
    labels = np.zeros((240, 240), np.int32)
    labels[8:20, 8:20] = 1
    labels[200:216, 200:216] = -1
    image = np.random.default_rng(0).random((1, 240, 240)).astype(np.float32)
    trainer = Trainer(tiny_config(batch_size=8, patch_size=32), [(image, labels)])
    seen = np.mean([(trainer._batch()[2] < 0).any(dim=(1, 2)).float().mean().item() for _ in range(20)])
    assert 0.3 < seen < 0.55  # about half of the 80 % of windows placed around a labelled pixel


def test_time_budget_plans_steps_from_measured_speed_and_anneals(samples):
    """A time-budgeted run plans its step count after calibration (the progress total), and its
    cosine schedule reaches the floor at the last planned step."""
    events: list[ProgressEvent] = []
    trainer = Trainer(tiny_config(minutes=0.1, iterations=1), samples, progress=events.append)
    result = trainer.fit()
    assert result.iterations_done > CALIBRATION_STEPS  # not the iteration count: the budget decided
    assert events[-1].iteration == result.iterations_done
    # the plan made after calibration (tests/test_train_plan.py: it never changes)
    assert events[-1].total == result.planned >= result.iterations_done > CALIBRATION_STEPS
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] < 0.2 * lrs[0]  # annealed over the planned steps, not stuck at the start rate
    assert totals(result.history)[-5:].mean() < totals(result.history)[:5].mean()
