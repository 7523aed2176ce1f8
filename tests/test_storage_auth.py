"""Passwords, throttling, disabled accounts, the admin bootstrap and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import auth
from storage.errors import Conflict, InputError, LoginThrottled, PermissionDenied
from storage.service import Studio
from tests.test_storage_support import PASSWORD, World

REPO = Path(__file__).resolve().parent.parent


def test_correct_and_incorrect_password(world: World) -> None:
    s = world.studio
    user = s.authenticate("lena", PASSWORD)
    assert user.username == "lena" and not user.is_admin
    assert s.authenticate("LENA", PASSWORD).id == user.id  # usernames ignore case
    with pytest.raises(PermissionDenied, match="wrong"):
        s.authenticate("lena", "wrong password")
    with pytest.raises(PermissionDenied, match="wrong"):
        s.authenticate("nobody", PASSWORD)
    with pytest.raises(PermissionDenied):
        s.authenticate("lena", "")


def test_hashes_are_bcrypt_not_plaintext(world: World) -> None:
    rows = world.studio.db.execute("SELECT username, password_hash FROM users").fetchall()
    for _, password_hash in rows:
        assert password_hash.startswith("$2b$") and len(password_hash) == 60
        assert PASSWORD not in password_hash
    raw = world.studio.settings.db_path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert auth.verify_password(PASSWORD, rows[0][1])


def test_failed_logins_are_throttled_with_a_doubling_delay(world: World) -> None:
    s = world.studio
    for _ in range(auth.FREE_FAILURES):
        with pytest.raises(PermissionDenied):
            s.authenticate("anna", "nope nope")
    # now locked: even the right password is not checked
    with pytest.raises(LoginThrottled) as err:
        s.authenticate("anna", PASSWORD)
    assert 0 < err.value.retry_after <= auth.BASE_DELAY_S
    # throttling is per username
    assert s.authenticate("lena", PASSWORD).username == "lena"
    time.sleep(err.value.retry_after + 0.05)
    with pytest.raises(PermissionDenied):
        s.authenticate("anna", "still wrong")  # 4th failure: 2 s
    with pytest.raises(LoginThrottled) as err:
        s.authenticate("anna", PASSWORD)
    assert 1.0 < err.value.retry_after <= 2.0
    # the lock survives a new Studio (it lives in the database, not in memory)
    with pytest.raises(LoginThrottled):
        Studio.open(s.data_dir).authenticate("Anna", PASSWORD)
    time.sleep(err.value.retry_after + 0.05)
    assert s.authenticate("anna", PASSWORD).username == "anna"  # success clears the count
    with pytest.raises(PermissionDenied):
        s.authenticate("anna", "wrong once more")
    assert s.authenticate("anna", PASSWORD)


def test_delay_schedule_caps_at_a_minute() -> None:
    assert [auth.delay_after(n) for n in range(1, 7)] == [0, 0, 1, 2, 4, 8]
    assert auth.delay_after(50) == auth.MAX_DELAY_S == 60


def test_disabled_user_cannot_log_in(world: World) -> None:
    s = world.studio
    s.set_disabled(world.admin, "anna", True)
    with pytest.raises(PermissionDenied, match="disabled"):
        s.authenticate("anna", PASSWORD)
    s.set_disabled(world.admin, "anna", False)
    assert s.authenticate("anna", PASSWORD)


def test_user_rules(world: World) -> None:
    s = world.studio
    with pytest.raises(Conflict):
        s.create_user(world.admin, "Lena", PASSWORD)
    with pytest.raises(InputError, match="at least"):
        s.create_user(world.admin, "newbie", "short")
    with pytest.raises(InputError, match="username"):
        s.create_user(world.admin, "no spaces please", PASSWORD)
    with pytest.raises(InputError, match="72 bytes"):
        s.create_user(world.admin, "longpw", "x" * 80)
    s.set_password(world.lead, "lena", "a brand new one")
    assert s.authenticate("lena", "a brand new one")


def test_ensure_admin_generates_a_password_once(studio: Studio) -> None:
    generated = studio.ensure_admin("root")
    assert generated and len(generated) >= 16
    assert studio.ensure_admin("root") is None  # already there: nothing generated, nothing changed
    user = studio.authenticate("root", generated)
    assert user.is_admin
    assert studio.ensure_admin("boss", "given password") is None
    assert studio.authenticate("boss", "given password").is_admin


def _cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPOCO_BCRYPT_ROUNDS": "4", "PYTHONPATH": str(REPO)}
    env.pop("SPOCO_ADMIN_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "storage", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_users(tmp_path) -> None:
    data = tmp_path / "data"
    r = _cli(data, "users", "add", "boss", "--password", "boss password", "--admin")
    assert r.returncode == 0, r.stderr
    r = _cli(data, "users", "add", "ann", stdin="ann password\n")
    assert r.returncode == 0, r.stderr
    r = _cli(data, "users", "add", "ann", "--password", "whatever123")
    assert r.returncode == 1 and "already exists" in r.stderr
    studio = Studio.open(data)
    boss = studio.authenticate("boss", "boss password")
    assert studio.authenticate("ann", "ann password")
    project = studio.create_project(boss, "Cells")
    r = _cli(data, "users", "set-role", "ann", "Cells", "lead")
    assert r.returncode == 0, r.stderr
    assert studio.role(studio.find_user("ann"), project.id) == "lead"
    r = _cli(data, "users", "disable", "ann")
    assert r.returncode == 0
    with pytest.raises(PermissionDenied):
        studio.authenticate("ann", "ann password")
    r = _cli(data, "users", "list")
    assert r.returncode == 0 and "boss" in r.stdout and "ann" in r.stdout
    assert "yes" in r.stdout.splitlines()[1]  # boss is admin


def test_cli_seed_demo_prints_a_generated_admin_password_once(tmp_path, monkeypatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("SPOCO_ADMIN_USER", "chief")
    r = _cli(data, "seed-demo")
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if "password:" in line)
    password = line.rsplit(":", 1)[1].strip()
    studio = Studio.open(data)
    chief = studio.authenticate("chief", password)
    assert chief.is_admin
    again = _cli(data, "seed-demo")
    assert again.returncode == 0 and "password" not in again.stdout
    if (REPO / "storage" / "demo.py").exists():
        assert studio.list_projects(chief)  # the web app's demo project was seeded
