"""Suggestions claimed per annotator: a real SQLite file, real Studios, and two annotators working
at once in two separate processes (each with its own Studio and connection, as two app servers or
two sessions would), never handed the same object."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from storage import predictions, versions
from storage.db import transaction
from storage.errors import Conflict, PermissionDenied
from storage.service import Studio
from tests.test_storage_support import PASSWORD, World, synthetic_png

N_PER_IMAGE = 8


def _open_suggestions(world: World, n_images: int = 2) -> list[int]:
    """What a prediction job leaves: a current model and N_PER_IMAGE open suggestions per image
    (small disjoint squares), ranked; returns their ids in rank order."""
    s, admin, pid = world.studio, world.admin, world.project.id
    image_ids = [
        s.add_image(admin, pid, f"img_{i}.png", synthetic_png(seed=i)[0]).id for i in range(n_images)
    ]
    items = []
    for image_id in image_ids:
        for k in range(N_PER_IMAGE):
            mask = np.zeros((64, 64), bool)
            y, x = divmod(k, 4)
            mask[y * 16 + 2 : y * 16 + 10, x * 16 + 2 : x * 16 + 10] = True
            bbox = (y * 16 + 2, x * 16 + 2, y * 16 + 10, x * 16 + 10)
            items.append({"image_id": image_id, "object_id": k + 1, "score": 0.9, "bbox": bbox, "mask": mask})
    with transaction(s.db) as db:
        vid = versions.register(db, pid, "checkpoints/none.pt", None, 1, 1, {}, None, None)
        predictions.replace_open_suggestions(db, pid, vid, items)
    return [sug.id for sug in s.suggestions(admin, pid, limit=100)]


def _annotate_queue(data_dir: str, username: str, project_id: int, start, out) -> None:
    """One annotator's session in its own process: take the next suggestion, spend a moment on
    it, accept it; until none is left. Reports the ids it was handed and any refusal."""
    studio = Studio.open(data_dir)
    try:
        user = studio.authenticate(username, PASSWORD)
        handed, refused = [], []
        start.wait(30)
        while (sug := studio.claim_suggestion(user, project_id)) is not None:
            handed.append(sug.id)
            time.sleep(0.02)  # looking at the object
            try:
                studio.add_annotation(user, sug.image_id, "object", sug.mask, "accepted", 1.0, sug.id)
            except Conflict as exc:
                refused.append(str(exc))
        out.put((username, handed, refused))
    finally:
        studio.close()


def test_two_annotators_at_once_are_never_handed_the_same_object(world: World) -> None:
    s, pid = world.studio, world.project.id
    ids = _open_suggestions(world, n_images=3)
    s.create_user(world.admin, "bert", PASSWORD)
    s.add_member(world.admin, pid, "bert", "annotator")

    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_annotate_queue, args=(str(s.data_dir), name, pid, start, out))
        for name in ("anna", "bert")
    ]
    for p in procs:
        p.start()
    start.set()
    results = {}
    for _ in procs:
        username, handed, refused = out.get(timeout=120)
        results[username] = (handed, refused)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0

    anna, bert = results["anna"][0], results["bert"][0]
    assert results["anna"][1] == [] and results["bert"][1] == []
    assert len(anna) == len(set(anna)) and len(bert) == len(set(bert))
    assert not set(anna) & set(bert)
    assert sorted(anna + bert) == sorted(ids)  # every object handed out exactly once
    assert anna and bert  # both worked at the same time
    assert s.suggestions(world.admin, pid, limit=100) == []
    labels = [a for im in s.list_images(world.admin, pid) for a in s.list_annotations(world.admin, im.id)]
    assert len(labels) == len(ids)


def test_a_claim_keeps_others_away_until_answered_or_released(world: World) -> None:
    s, pid, anna = world.studio, world.project.id, world.annotator
    first, second, third = _open_suggestions(world, n_images=1)[:3]
    bert = s.create_user(world.admin, "bert", PASSWORD)
    s.add_member(world.admin, pid, "bert", "annotator")

    assert s.claim_suggestion(anna, pid).id == first
    assert s.claim_suggestion(anna, pid).id == first  # renewed, still hers
    assert s.claim_suggestion(bert, pid, prefer=first).id == second  # not hers to take
    holders = s.suggestion_holders(world.lead, pid)
    assert {sid: name for sid, (name, _) in holders.items()} == {first: "anna", second: "bert"}
    assert all(expiry > time.time() for _, expiry in holders.values())

    sug = next(x for x in s.suggestions(anna, pid, limit=100) if x.id == first)
    with pytest.raises(Conflict, match="anna"):
        s.add_annotation(bert, sug.image_id, "object", sug.mask, "accepted", suggestion_id=first)
    with pytest.raises(Conflict, match="anna"):
        s.resolve_suggestion(bert, first, "skipped")

    assert s.claim_suggestion(anna, pid, prefer=third).id == third  # moving on releases the first
    assert s.claim_suggestion(bert, pid, prefer=first).id == first
    assert s.suggestion_holders(anna, pid).keys() == {first, third}

    s.add_annotation(bert, sug.image_id, "object", sug.mask, "accepted", suggestion_id=first)
    assert first not in s.suggestion_holders(anna, pid)
    s.release_suggestions(anna, pid)
    assert s.suggestion_holders(anna, pid) == {}
    assert s.claim_suggestion(bert, pid, prefer=third).id == third


def test_an_expired_lease_frees_the_object(world: World) -> None:
    s, pid, anna = world.studio, world.project.id, world.annotator
    first = _open_suggestions(world, n_images=1)[0]
    bert = s.create_user(world.admin, "bert", PASSWORD)
    s.add_member(world.admin, pid, "bert", "annotator")

    assert s.claim_suggestion(anna, pid, lease_s=0.3).id == first
    assert s.claim_suggestion(bert, pid).id != first
    time.sleep(0.4)  # anna went away
    assert s.claim_suggestion(bert, pid, prefer=first).id == first
    assert s.claim_suggestion(anna, pid).id != first


def test_a_passed_queue_is_checked(world: World) -> None:
    """The page passes the queue it already read; a suggestion of another project in it (or one
    answered meanwhile) is never claimed, and a non-member is refused."""
    s, pid = world.studio, world.project.id
    ids = _open_suggestions(world, n_images=1)
    queue = s.suggestions(world.admin, pid, limit=100)
    assert s.claim_suggestion(world.admin, world.other_project.id, queue=queue) is None
    assert s.suggestion_holders(world.admin, pid) == {}
    s.resolve_suggestion(world.lead, ids[0], "skipped")
    assert s.claim_suggestion(world.annotator, pid, queue=queue).id == ids[1]
    with pytest.raises(PermissionDenied):
        s.claim_suggestion(world.outsider, pid, queue=queue)
