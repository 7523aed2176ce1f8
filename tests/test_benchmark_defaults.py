"""What a benchmark measures is what users get: its training settings are TrainConfig's defaults
(the CLI's and the app's) except the overrides it declares and prints."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
from scipy import ndimage

from benchmarks import real_nuclei, sparse_vs_dense
from spoco_core.train import TrainConfig


def test_real_nuclei_trains_with_the_defaults_and_its_declared_overrides_only() -> None:
    got = asdict(real_nuclei.train_config(minutes=2.5, seed=3))
    want = asdict(replace(TrainConfig(), minutes=2.5, seed=3, **real_nuclei.OVERRIDES))
    assert got == want
    assert set(real_nuclei.OVERRIDES) <= {"device"}  # nothing that changes what is learned
    changed = [row for row in real_nuclei.ROWS if row.ablation]  # only a named ablation row may
    assert changed == [real_nuclei.ROWS[-1]]
    for field_name, value in changed[0].ablation:
        assert field_name in changed[0].name and getattr(TrainConfig(), field_name) != value


def test_sparse_vs_dense_trains_with_the_defaults_and_its_declared_overrides_only() -> None:
    got = asdict(sparse_vs_dense.train_config(sparse_vs_dense.Setup(seed=2)))
    want = asdict(replace(TrainConfig(), seed=2, **sparse_vs_dense.OVERRIDES))
    assert got == want
    ablation = sparse_vs_dense.ROWS[-1]  # only an ablation row may change what is learned
    assert asdict(sparse_vs_dense.train_config(sparse_vs_dense.Setup(seed=2), ablation)) != want


def test_real_nuclei_labels_answer_the_annotate_pages_background_prompt() -> None:
    """The sparse rows hold the marks the app asks for: one beside the objects per labelled object
    beyond the first ten marks, on reference background only."""
    ref = np.zeros((120, 120), np.int32)
    for k in range(16):  # sixteen separate 10x10 nuclei on a grid
        y, x = 5 + 28 * (k // 4), 5 + 28 * (k % 4)
        ref[y : y + 10, x : x + 10] = k + 1
    sparse = np.where(ref <= 3, ref, 0).astype(np.int32)  # three labelled objects, no mark yet
    assert real_nuclei.answer_prompt(sparse, ref, n_marks=0, seed=0) == 3
    assert np.all(ref[sparse == -1] == 0)
    beside = ndimage.distance_transform_edt(~np.isin(ref, [1, 2, 3])) <= 2 + real_nuclei.MARK_SIDE * 1.8
    assert np.all(beside[sparse == -1])  # in the gaps next to the labelled objects
    assert real_nuclei.answer_prompt(sparse, ref, n_marks=3, seed=0) == 0  # nothing more is asked
    rows = real_nuclei.sparse_labels([ref], 0.5)  # the benchmark's own draw: 8 objects and their marks
    assert np.all(ref[rows[0] == -1] == 0) and np.unique(rows[0][rows[0] > 0]).size == 8
