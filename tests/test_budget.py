"""The training memory budget: the estimate against the real network and a real run, refusals in the
library, the ``train`` CLI and (tests/test_storage_hardening.py) the Studio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spoco_core import budget
from spoco_core.model import EmbeddingUNet, UNetConfig
from spoco_core.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [(1, 16, 4, 16), (3, 32, 5, 8), (2, 8, 7, 24), (1, 4, 1, 16)])
def test_parameter_count_is_the_networks(shape) -> None:
    cin, base, depth, emb = shape
    net = EmbeddingUNet(UNetConfig(in_channels=cin, base_channels=base, depth=depth, embedding_dim=emb))
    assert budget.parameter_count(cin, base, depth, emb) == sum(p.numel() for p in net.parameters())


def test_absurd_networks_and_batches_are_refused(monkeypatch) -> None:
    monkeypatch.delenv("SPOCO_TRAIN_MEMORY_GB", raising=False)
    need = budget.check_training_memory(1, 16, 4, 4, 128)  # the defaults
    assert need < 1 * 2**30
    with pytest.raises(ValueError, match=r"base_channels 512, depth 8.*lower") as err:
        budget.check_training_memory(1, 512, 8, 4, 128)
    assert "GiB" in str(err.value) and "SPOCO_TRAIN_MEMORY_GB" in str(err.value)
    with pytest.raises(ValueError, match="depth 30"):
        budget.check_training_memory(1, 16, 30, 4, 128)
    with pytest.raises(ValueError, match="batch 256 of 4096 px"):
        budget.check_training_memory(1, 16, 4, 256, 4096)
    with pytest.raises(ValueError, match="batch_size"):
        budget.check_training_memory(1, 16, 4, 0, 128)
    monkeypatch.setenv("SPOCO_TRAIN_MEMORY_GB", "0.25")
    assert budget.training_problem(1, 16, 4, 4, 128) is not None
    monkeypatch.setenv("SPOCO_TRAIN_MEMORY_GB", "64")
    assert budget.training_problem(1, 16, 4, 4, 128) is None
    assert budget.training_problem(1, 16, 4, 4, 128, budget=2**30) is None
    monkeypatch.setenv("SPOCO_TRAIN_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="SPOCO_TRAIN_MEMORY_GB"):
        budget.check_training_memory(1, 16, 4, 4, 128)


_MEASURE = """
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from spoco_core.model import UNetConfig
from spoco_core.synthetic import generate
from spoco_core.train import TrainConfig, Trainer
base, depth, batch, patch = map(int, sys.argv[1:5])
img, lab = generate(patch, seed=0)
samples = [(img[None].astype(np.float32) / 255, lab.astype(np.int64))]
model = UNetConfig(in_channels=1, base_channels=base, depth=depth)
cfg = TrainConfig(iterations=2, batch_size=batch, patch_size=patch, device="cpu", amp=False, model=model)
Trainer(cfg, samples).fit()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
"""


def test_estimate_is_near_a_real_runs_peak_memory() -> None:
    shape = (32, 3, 4, 192)  # base, depth, batch, patch
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, shape)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    base, depth, batch, patch = shape
    estimate = budget.training_bytes(1, base, depth, batch, patch)
    assert 0.6 < estimate / peak < 2.0, (estimate / 2**20, peak / 2**20)


def test_train_cli_refuses_a_network_over_the_budget(tmp_path) -> None:
    write_dataset(tmp_path / "data", 1, 32, 0)
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "spoco_core", "train", "--images", str(tmp_path / "data" / "images"),
         "--labels", str(tmp_path / "data" / "labels"), "--out", str(tmp_path / "m.pt"),
         "--depth", "30", "--iterations", "1", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "depth 30" in lines[0], run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "spoco_core", "train", "--images", str(tmp_path / "data" / "images"),
         "--labels", str(tmp_path / "data" / "labels"), "--out", str(tmp_path / "m.pt"),
         "--base-channels", "512", "--depth", "8", "--patch-size", "256", "--iterations", "1",
         "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode != 0 and "SPOCO_TRAIN_MEMORY_GB" in run.stderr, run.stderr
    assert not (tmp_path / "m.pt").exists()
    assert time.monotonic() - t0 < 120  # refused from the arguments, not after allocating
