"""What a benchmark measures is what users get: its training settings are TrainConfig's defaults
(the CLI's and the app's) except the overrides it declares and prints."""

from __future__ import annotations

from dataclasses import asdict, replace

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
