"""An image marked complete (every object labelled): training takes its unlabelled pixels as
background. Real SQLite file, the training job's real samples; the simulated annotation loop
marks an image complete the same way."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.labels import OBJECTS_PER_MARK, complete_labels, wants_background
from spoco_core.simulate import SimulatedAnnotator
from storage.errors import InputError, PermissionDenied
from storage.job_context import JobContext
from storage.migrations import LATEST, schema_version
from storage.train_job import collect_samples
from tests.test_storage_support import World, synthetic_png


def _samples(world: World) -> list[np.ndarray]:
    """The sparse labels the training job would train on, image by image."""
    job = {"id": 0, "project_id": world.project.id, "params": "{}"}
    samples, _, _ = collect_samples(JobContext(world.studio.db, world.studio.blobs, job))
    return [labels for _, labels in samples]


def test_complete_labels_turn_unknown_into_background_only() -> None:
    sparse = np.array([[0, -1, 2], [1, 0, 0]], np.int32)
    out = complete_labels(sparse)
    assert out.dtype == np.int32
    assert out.tolist() == [[-1, -1, 2], [1, -1, -1]]
    assert sparse.tolist() == [[0, -1, 2], [1, 0, 0]]  # the input is not changed


def test_a_complete_image_trains_with_its_rest_as_background(world: World) -> None:
    s = world.studio
    assert schema_version(s.db) == LATEST
    data, _ = synthetic_png(seed=1)
    image = s.add_image(world.lead, world.project.id, "a.png", data)
    empty = s.add_image(world.lead, world.project.id, "empty.png", synthetic_png(seed=2)[0])
    square = np.zeros((64, 64), bool)
    square[5:15, 5:15] = True
    s.add_annotation(world.annotator, image.id, "object", square)

    (labels,) = _samples(world)  # the empty image has no label: not a sample
    assert (labels == 0).sum() == 64 * 64 - 100 and (labels == 1).sum() == 100

    marked = s.set_image_complete(world.annotator, image.id)
    assert marked.complete and s.get_image(world.lead, image.id).complete
    s.set_image_complete(world.lead, empty.id)  # an image without objects: all background
    first, second = _samples(world)
    assert (first == 0).sum() == 0 and (first == 1).sum() == 100 and (first == -1).sum() == 64 * 64 - 100
    assert (second == -1).all()

    assert not s.set_image_complete(world.annotator, image.id, False).complete  # taken back
    assert [int((lab == 0).sum()) for lab in _samples(world)] == [64 * 64 - 100, 0]


def test_who_may_mark_an_image_complete(world: World) -> None:
    s = world.studio
    image = s.add_image(world.lead, world.project.id, "a.png", synthetic_png(seed=1)[0])
    with pytest.raises(PermissionDenied):
        s.set_image_complete(world.outsider, image.id)
    with pytest.raises(InputError):
        s.set_image_complete(world.annotator, image.id, "yes")  # type: ignore[arg-type]
    assert not s.get_image(world.lead, image.id).complete


def test_the_simulated_annotator_completes_an_image_once_every_object_is_labelled() -> None:
    gt = np.zeros((8, 8), np.int32)
    gt[1:3, 1:3], gt[5:7, 5:7] = 1, 2
    annotator = SimulatedAnnotator({"a": gt})
    annotator.add_object("a", 1)
    assert not annotator.is_complete("a")
    assert (annotator.training_labels("a") == 0).any()  # the rest is still unknown
    annotator.add_object("a", 2)
    assert annotator.is_complete("a")
    assert np.array_equal(annotator.training_labels("a"), np.where(gt == 0, -1, gt))


def test_complete_images_without_any_object_are_not_enough_to_train(world: World) -> None:
    s = world.studio
    image = s.add_image(world.lead, world.project.id, "empty.png", synthetic_png(seed=2)[0])
    s.set_image_complete(world.lead, image.id)
    with pytest.raises(InputError, match="label at least one object"):
        s.enqueue_training(world.lead, world.project.id)
    square = np.zeros((64, 64), bool)
    square[5:15, 5:15] = True
    s.add_annotation(world.annotator, image.id, "object", square)
    assert s.enqueue_training(world.lead, world.project.id).kind == "train"


def test_an_image_wants_background_when_objects_outnumber_its_marks() -> None:
    assert not wants_background(0, 0)
    assert wants_background(1, 0)  # objects and not a single mark
    assert not wants_background(OBJECTS_PER_MARK, 1)
    assert wants_background(OBJECTS_PER_MARK + 1, 1)
    assert not wants_background(OBJECTS_PER_MARK + 1, 1, complete=True)  # the rest is background
