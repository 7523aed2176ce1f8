"""Hostile and broken inputs against the storage layer: forged polygons, escaping imports, flooding
log-ins, spreadsheet formulas, out-of-range API arguments, damaged checkpoints and databases."""

from __future__ import annotations

import csv
import io
import math
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from storage import auth, masks
from storage.errors import InputError, LoginThrottled, PermissionDenied
from tests.test_storage_support import PASSWORD, World, png_bytes

SIDE = 256


@pytest.fixture
def big_image(world: World) -> int:
    return world.studio.add_image(
        world.lead, world.project.id, "big.png", png_bytes(np.zeros((SIDE, SIDE), np.uint8))
    ).id


def _measure(fn) -> tuple[float, float, object]:
    """(seconds, peak MB traced, result or the exception raised)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out: object = fn()
    except Exception as exc:  # the caller inspects it
        out = exc
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, out


# ------------------------------------------------------------------ forged polygons


@pytest.mark.parametrize(
    "points",
    [
        [(5, 5), (1e7, 5), (5, 1e7)],  # covers part of the image, reaches 1e7 px out
        [(-1e7, -1e7), (1e7, -1e7), (0, 1e7)],  # covers the whole image
        [(1e7, 1e7), (1e7 + 50, 1e7), (1e7, 1e7 + 50)],  # entirely 1e7 px away
    ],
)
def test_far_away_polygon_costs_little_time_and_memory(world: World, big_image: int, points) -> None:
    s = world.studio
    seconds, peak_mb, out = _measure(lambda: s.add_polygon(world.annotator, big_image, "object", points))
    assert isinstance(out, InputError), out
    assert "outside" in str(out)
    assert peak_mb < 50, f"{peak_mb:.0f} MB"
    assert seconds < 2.0, f"{seconds:.1f} s"  # ~0.01 s here; rasterising the outline took minutes
    assert s.list_annotations(world.annotator, big_image) == []


def test_polygon_reaching_out_is_clipped_like_the_image(world: World, big_image: int) -> None:
    s = world.studio
    ann = s.add_polygon(
        world.annotator, big_image, "object", [(-200, -250), (100, -250), (100, 100), (-200, 100)]
    )
    assert ann.mask[:101, :101].all() and ann.mask.sum() == 101 * 101
    # a triangle whose far corners lie outside: every pixel centre left of the hypotenuse x + y = 400
    tri = masks.polygon([(0, 0), (400, 0), (0, 400)], (SIDE, SIDE))
    yy, xx = np.mgrid[:SIDE, :SIDE]
    assert np.array_equal(tri[xx + yy < 399], np.ones(int((xx + yy < 399).sum()), bool))
    assert not tri[xx + yy > 401].any()


def test_polygon_vertex_count_is_capped(world: World, big_image: int) -> None:
    s = world.studio
    t = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    circle = [(128 + 60 * np.cos(a), 128 + 60 * np.sin(a)) for a in t]
    drawn = s.add_polygon(world.annotator, big_image, "object", circle)  # a long freehand stroke
    assert abs(int(drawn.mask.sum()) - np.pi * 60**2) < 0.05 * np.pi * 60**2
    t = np.linspace(0, 2 * np.pi, masks.MAX_POLYGON_VERTICES + 1, endpoint=False)
    forged = [(128 + 60 * np.cos(a), 128 + 60 * np.sin(a)) for a in t]
    with pytest.raises(InputError, match="at most"):
        s.add_polygon(world.annotator, big_image, "object", forged)
    assert len(s.list_annotations(world.annotator, big_image)) == 1


# ------------------------------------------------------------------ server-folder import


def _png_folder(folder, names, first: int = 0) -> None:
    """Small PNGs of distinct contents (the Studio stores equal contents once)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names, start=first):
        (folder / name).write_bytes(png_bytes(np.full((8, 8), k, np.uint8)))


def test_folder_import_is_off_without_an_import_root(world: World, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SPOCO_IMPORT_ROOT", raising=False)
    _png_folder(tmp_path / "incoming", ["a.png"])
    with pytest.raises(PermissionDenied, match="SPOCO_IMPORT_ROOT"):
        world.studio.add_images_from_folder(world.lead, world.project.id, tmp_path / "incoming")
    monkeypatch.setenv("SPOCO_IMPORT_ROOT", "  ")
    with pytest.raises(PermissionDenied):
        world.studio.add_images_from_folder(world.admin, world.project.id, tmp_path / "incoming")
    assert world.studio.list_images(world.lead, world.project.id) == []


def test_folder_import_reads_nothing_outside_the_root(world: World, tmp_path, monkeypatch) -> None:
    root, secret = tmp_path / "root", tmp_path / "secret"
    _png_folder(root / "incoming", ["a.png"])
    _png_folder(secret, ["s.png", "t.png"], first=10)
    (root / "incoming" / "leak.png").symlink_to(secret / "s.png")
    (root / "linked").symlink_to(secret, target_is_directory=True)
    _png_folder(root / "other", ["o.png"], first=20)
    (root / "incoming" / "inside.png").symlink_to(root / "other" / "o.png")  # stays inside: fine
    monkeypatch.setenv("SPOCO_IMPORT_ROOT", str(root))
    s = world.studio
    added, errors = s.add_images_from_folder(world.lead, world.project.id, root / "incoming")
    assert sorted(i.name for i in added) == ["a.png", "inside.png"]
    assert len(errors) == 1 and "leak.png" in errors[0] and "outside" in errors[0]
    for folder in (root / "linked", secret, root / ".." / "secret", "../secret"):
        with pytest.raises(PermissionDenied, match="inside"):
            s.add_images_from_folder(world.lead, world.project.id, folder)
    _png_folder(root / "more", ["m.png"], first=30)
    added, _ = s.add_images_from_folder(world.lead, world.project.id, "more")  # relative to the root
    assert [i.name for i in added] == ["m.png"]
    names = sorted(i.name for i in s.list_images(world.lead, world.project.id))
    assert names == ["a.png", "inside.png", "m.png"]


# ------------------------------------------------------------------ failed log-ins


def test_failed_login_names_are_bounded(world: World) -> None:
    s = world.studio
    huge = "x" * 1_000_000
    for name in (huge, "a" * 65, "robert'); --", "admin\x00"):
        with pytest.raises(PermissionDenied, match="wrong"):
            s.authenticate(name, "some password")
    with pytest.raises(PermissionDenied, match="wrong"):
        s.authenticate("nobody", "some password")  # could be a user: counted
    stored = [r[0] for r in s.db.execute("SELECT username FROM login_failures").fetchall()]
    assert stored == ["nobody"]
    assert s.settings.db_path.stat().st_size < 1_000_000
    assert s.authenticate("admin", PASSWORD).is_admin


def test_failed_login_names_are_purged(world: World) -> None:
    s = world.studio
    t = time.time()
    day = auth.FAILURE_MEMORY_S
    rows = [(f"old{k}", 5, t - day - 60 - k, t - day) for k in range(50)]  # unlocked, a day ago
    rows += [("locked-long", 9, t - day - 60, t + 3600)]  # still locked: kept
    rows += [(f"recent{k}", 1, t - 600 - k, 0.0) for k in range(auth.MAX_FAILURE_ROWS + 20)]
    with s.db.conn:
        s.db.conn.executemany("INSERT INTO login_failures VALUES (?, ?, ?, ?)", rows)
    with pytest.raises(PermissionDenied):
        s.authenticate("lena", "not her password")
    names = {r[0] for r in s.db.execute("SELECT username FROM login_failures").fetchall()}
    assert len(names) <= auth.MAX_FAILURE_ROWS
    assert not any(n.startswith("old") for n in names)
    assert {"lena", "locked-long", "recent0"} <= names
    assert f"recent{auth.MAX_FAILURE_ROWS + 19}" not in names  # the oldest went first


# ------------------------------------------------------------------ export


def test_export_names_are_extractable_and_counts_are_not_formulas(world: World) -> None:
    s, lead, pid = world.studio, world.lead, world.project.id
    names = [
        '=HYPERLINK("evil.example";"click").png',
        "+1-2.png",
        "@SUM(A1).png",
        "con.png",
        "Lpt1.tif",
        'a:b?c*d"e<f>g|h.png',
        "cells.png",
        "CELLS.tif",
        "x" * 200 + ".png",
    ]
    for k, name in enumerate(names):
        s.add_image(lead, pid, name, png_bytes(np.full((8, 8), k, np.uint8)))
    with zipfile.ZipFile(io.BytesIO(s.export_zip(lead, pid))) as zf:
        entries = zf.namelist()
        rows = list(csv.DictReader(io.StringIO(zf.read("counts.csv").decode())))
    for entry in entries:
        for part in entry.split("/"):
            assert not set(part) & set('<>:"\\|?*'), entry
            assert part == part.strip(" ."), entry
            assert part.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "lpt1", "com1"}, entry
            assert len(part) <= 120, entry
    stems = [e.split("/", 1)[1].rsplit(".", 1)[0] for e in entries if e.startswith("labels/")]
    assert len(stems) == len(names) == len({st.lower() for st in stems})
    cells = [r["image"] for r in rows]
    assert len(cells) == len(names)
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    assert cells[0] == "'" + names[0] and cells[6] == "cells.png"


# ------------------------------------------------------------------ service API arguments


def test_project_names_and_descriptions_are_checked(world: World) -> None:
    s = world.studio
    for name in ("Cells\x00", "Cells\nLeaves", "evil\u202egnp.exe", "tab\there", "\x1b[31mred"):
        with pytest.raises(InputError, match="control"):
            s.create_project(world.admin, name)
    with pytest.raises(InputError, match="at most 2000"):
        s.create_project(world.admin, "Long", "x" * 2001)
    with pytest.raises(InputError, match="control"):
        s.create_project(world.admin, "Bell", "ding\x07")
    ok = s.create_project(world.lead, "  Nuclei 2024 – día 1 ", "line one\r\nline two\tend")
    assert ok.name == "Nuclei 2024 – día 1" and ok.description == "line one\nline two\tend"
    names = {p.name for p in s.list_projects(world.admin)}
    assert names == {"Cells", "Leaves", "Nuclei 2024 – día 1"}


def test_label_seconds_are_bounded(world: World, big_image: int) -> None:
    s = world.studio
    mask = np.zeros((SIDE, SIDE), bool)
    mask[10:20, 10:20] = True
    for seconds in (1e308, float("inf"), -1, 86_401):
        with pytest.raises(InputError, match="seconds"):
            s.add_annotation(world.annotator, big_image, "object", mask, seconds=seconds)
    ann = s.add_annotation(world.annotator, big_image, "object", mask, seconds=3599.5)
    with pytest.raises(InputError, match="seconds"):
        s.edit_annotation(world.annotator, ann.id, mask, seconds=1e12)
    assert [a.seconds for a in s.list_annotations(world.annotator, big_image)] == [3599.5]


def test_ids_must_be_whole_numbers(world: World, big_image: int) -> None:
    s, lead = world.studio, world.lead
    pid = world.project.id
    for bad in (pid + 0.9, float(pid), True, "1; DROP TABLE images", 2**70, -1, [pid]):
        with pytest.raises(InputError, match="project_id"):
            s.list_images(lead, bad)
    with pytest.raises(InputError, match="image_id"):
        s.get_image(lead, big_image + 0.5)
    with pytest.raises(InputError, match="image_id"):
        s.add_polygon(
            world.annotator, image_id=big_image + 0.2, kind="object", points=[(1, 1), (9, 1), (9, 9)]
        )
    with pytest.raises(InputError, match="limit"):
        s.suggestions(lead, pid, limit=1e308)
    assert s.get_image(lead, np.int64(big_image)).id == big_image  # numpy integers are whole numbers
    assert s.get_image(lead, str(big_image)).id == big_image
    assert [p.id for p in [s.get_project(lead, pid)]] == [pid]


# ------------------------------------------------------------------ training memory budget


def test_training_parameters_are_bounded_by_memory(world: World, big_image: int, monkeypatch) -> None:
    monkeypatch.delenv("SPOCO_TRAIN_MEMORY_GB", raising=False)
    s, pid = world.studio, world.project.id
    mask = np.zeros((SIDE, SIDE), bool)
    mask[10:30, 10:30] = True
    s.add_annotation(world.lead, big_image, "object", mask)
    for params in (
        {"base_channels": 512, "depth": 8},  # each within its own bounds
        {"batch_size": 256, "patch_size": 4096},
    ):
        with pytest.raises(InputError, match="memory"):
            s.enqueue_training(world.lead, pid, iterations=5, params=params)
    assert s.list_jobs(world.lead, pid) == []
    job = s.enqueue_training(world.lead, pid, iterations=5, params={"base_channels": 32, "depth": 5})
    assert job.status == "queued"


def test_failures_from_one_client_do_not_lock_the_user_out_elsewhere(world: World) -> None:
    s = world.studio
    attacker, office = "203.0.113.9", "198.51.100.7"
    for _ in range(auth.FREE_FAILURES):
        with pytest.raises(PermissionDenied):
            s.authenticate("admin", "guess guess", client=attacker)
    with pytest.raises(LoginThrottled):
        s.authenticate("admin", PASSWORD, client=attacker)  # locked for the attacker...
    assert s.authenticate("admin", PASSWORD, client=office).is_admin  # ...not for the admin
    # spraying other names from the attacker's address locks that address, nobody else
    for k in range(auth.FREE_CLIENT_FAILURES - auth.FREE_FAILURES):
        with pytest.raises(PermissionDenied):
            s.authenticate(f"user{k}", "guess guess", client=attacker)
    with pytest.raises(LoginThrottled):
        s.authenticate("anna", PASSWORD, client=attacker)
    assert s.authenticate("anna", PASSWORD, client=office).username == "anna"
    assert s.authenticate("lena", PASSWORD).username == "lena"  # no client: per username, as before
    keys = [r[0] for r in s.db.execute("SELECT username FROM login_failures").fetchall()]
    assert all(k.endswith(f"from {attacker}") for k in keys), keys


def test_working_minutes_are_for_leads(world: World, big_image: int) -> None:
    s, pid = world.studio, world.project.id
    box = np.zeros((SIDE, SIDE), bool)
    box[5:15, 5:15] = True
    s.add_annotation(world.annotator, big_image, "object", box, seconds=30.0)
    s.add_annotation(world.lead, big_image, "object", np.roll(box, 40, axis=0), seconds=90.0)
    bert = s.create_user(world.admin, "bert", PASSWORD)
    s.add_member(world.admin, pid, "bert", "annotator")
    s.add_annotation(bert, big_image, "object", np.roll(box, 80, axis=0), seconds=45.0)
    lead_view = s.project_stats(world.lead, pid)
    assert lead_view["total_seconds"] == 165.0
    assert {r["username"]: r["seconds"] for r in lead_view["per_annotator"]} == {
        "anna": 30.0,
        "lena": 90.0,
        "bert": 45.0,
    }
    anna_view = s.project_stats(world.annotator, pid)
    assert anna_view["total_seconds"] is None
    assert {r["username"]: r["seconds"] for r in anna_view["per_annotator"]} == {
        "anna": 30.0,
        "lena": None,
        "bert": None,
    }
    assert {r["username"]: r["n_objects"] for r in anna_view["per_annotator"]} == {
        "anna": 1,
        "lena": 1,
        "bert": 1,
    }


def test_label_seconds_of_colleagues_are_for_leads(world: World, big_image: int) -> None:
    s = world.studio
    box = np.zeros((SIDE, SIDE), bool)
    box[5:15, 5:15] = True
    mine = s.add_annotation(world.annotator, big_image, "object", box, seconds=12.0)
    theirs = s.add_annotation(world.lead, big_image, "object", np.roll(box, 40, axis=0), seconds=80.0)
    seen = {a.id: a.seconds for a in s.list_annotations(world.annotator, big_image)}
    assert seen[mine.id] == 12.0 and math.isnan(seen[theirs.id])
    assert math.isnan(s.annotation_history(world.annotator, theirs.id)[0].seconds)
    assert {a.id: a.seconds for a in s.list_annotations(world.lead, big_image)} == {
        mine.id: 12.0,
        theirs.id: 80.0,
    }
