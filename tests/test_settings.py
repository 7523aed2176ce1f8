"""One reader of the environment: ``storage.config.Settings`` (and ``spoco_core.budget`` for the
method's own memory budget); what it makes of each ``SPOCO_*`` variable."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from storage.config import Settings

REPO = Path(__file__).resolve().parent.parent
READERS = {"storage/config.py", "spoco_core/budget.py"}


def test_only_the_settings_read_spoco_variables() -> None:
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    readers = set()
    for name in files:
        if name.startswith("tests/"):
            continue
        text = (REPO / name).read_text(encoding="utf-8")
        if re.search(r"(os\.environ|getenv)[^\n]*SPOCO_", text):
            readers.add(name)
    assert readers <= READERS, sorted(readers - READERS)


def test_defaults_without_any_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("SPOCO_")]:
        monkeypatch.delenv(name)
    s = Settings.from_env(tmp_path)
    assert s.data_dir == tmp_path.resolve() and s.admin_user == "admin" and s.admin_password is None
    assert s.import_root is None and s.torch_threads is None and not s.no_worker
    assert s.train_preset == "default" and s.demo_samples and s.backup_hours == 6.0


def test_each_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "SPOCO_DATA_DIR": str(tmp_path / "d"),
        "SPOCO_ADMIN_USER": " chief ",
        "SPOCO_ADMIN_PASSWORD": "s3cret pass",
        "SPOCO_IMPORT_ROOT": str(tmp_path),
        "SPOCO_BACKUP_HOURS": "0",
        "SPOCO_TORCH_THREADS": "2",
        "SPOCO_NO_WORKER": "Yes",
        "SPOCO_TRAIN_PRESET": "Tiny",
        "SPOCO_DEMO_IMAGES": "3",
        "SPOCO_DEMO_SIZE": "64",
        "SPOCO_DEMO_SAMPLES": "0",
        "SPOCO_MAX_SIDE": "100",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert s.data_dir == (tmp_path / "d").resolve() and s.admin_user == "chief"
    assert s.admin_password == "s3cret pass" and "s3cret" not in repr(s)
    assert s.import_root == tmp_path.resolve() and s.backup_hours == 0.0 and s.torch_threads == 2
    assert s.no_worker and s.train_preset == "tiny" and (s.demo_images, s.demo_size) == (3, 64)
    assert not s.demo_samples and s.max_side == 100


@pytest.mark.parametrize("name", ["SPOCO_MAX_SIDE", "SPOCO_BACKUP_HOURS", "SPOCO_DEMO_SIZE"])
def test_a_number_that_is_not_one_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "lots")
    with pytest.raises(ValueError, match=name):
        Settings.from_env()
