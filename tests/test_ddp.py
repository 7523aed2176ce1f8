"""Multi-process training with torchrun (gloo on CPU): two ranks train, the checkpoint is written once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spoco_core.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path):
    data = tmp_path / "data"
    synth = subprocess.run(
        [sys.executable, "-m", "spoco_core", "synth", "--out", str(data), "--n", "3", "--size", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synth.returncode == 0, synth.stderr
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "spoco_core", "train", "--images", str(data / "images"), "--labels", str(data / "labels"),
        "--out", str(out), "--iterations", "3", "--fraction", "0.5", "--device", "cpu",
        "--base-channels", "8", "--depth", "2", "--patch-size", "32", "--batch-size", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("wrote") == 1  # only rank 0 reports and saves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ddp.pt"]
    ckpt = load_checkpoint(out, "cpu")
    assert ckpt.iteration == 3
    assert ckpt.meta["world_size"] == 2
