"""A ready-to-use "Demo" project, so a fresh `make run` has images to annotate and enough sparse
labels to start training at once: synthetic images with a few ground-truth objects labelled, plus
real sample images shipped inside scikit-image (read from the package, nothing downloaded).

The phase-contrast cell and the coins come labelled as an annotator labels a new image type before
any model exists: a few of the classical pipeline's proposals accepted, background marked beside
them and on the open background. Left unlabelled, the first model, taught on synthetic images
only, tiled their textured backgrounds with a hundred objects and more
(``benchmarks/demo_first_model.py``). The immunohistochemistry image stays unlabelled: what the
model makes of an image type it was never shown, and where its suggestions point first."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from storage.config import Settings
from storage.records import Project, User
from storage.service import Studio

DEMO_NAME = "Demo"
DEMO_DESCRIPTION = (
    "Synthetic cells/nuclei/leaves with a few objects outlined per image, and real sample images "
    "from scikit-image: a phase-contrast cell and coins with a few objects accepted from the "
    "classical proposals, and an unlabelled immunohistochemistry image."
)
SAMPLE_FILES = ("cell.png", "ihc.png", "coins.png")
OPEN_BACKGROUND_MARKS = 3
"""Marks on a labelled sample's open background, besides those beside its objects: the texture
away from the objects is what a model taught on other images calls foreground."""
OBJECTS_PER_IMAGE = 3
SAMPLE_OBJECTS = {"cell.png": 1, "coins.png": OBJECTS_PER_IMAGE}
"""Sample images labelled at seeding, and how many classical proposals each gets accepted."""
MIN_OBJECT_AREA = 60
BACKGROUND_SIDE = 20


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _pick_objects(labels: np.ndarray, k: int, seed: int) -> list[int]:
    """`k` whole objects that do not touch the border (a partial object would teach a wrong shape)."""
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    candidates = [int(i) for i, a in zip(ids, areas, strict=True) if a >= MIN_OBJECT_AREA and i not in border]
    rng = np.random.default_rng(seed)
    if len(candidates) <= k:
        return candidates
    return sorted(int(i) for i in rng.choice(candidates, size=k, replace=False))


def _sample_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def seed_demo(
    studio: Studio,
    admin_user: User,
    n_synthetic: int | None = None,
    size: int | None = None,
    with_samples: bool | None = None,
    label_samples: bool = True,
) -> Project | None:
    """Create the "Demo" project unless one exists; returns it, or None when it was already there.

    Defaults: 8 synthetic images of 256 px plus the scikit-image samples. `python -m storage
    seed-demo` passes no options, so SPOCO_DEMO_IMAGES, SPOCO_DEMO_SIZE and SPOCO_DEMO_SAMPLES=0
    shrink the demo (a slow laptop, the browser test: predicting every image takes CPU time).
    ``label_samples=False`` leaves the samples unlabelled (benchmarks/demo_first_model.py compares).
    """
    from spoco_core.synthetic import generate

    settings = Settings.from_env()
    n_synthetic = settings.demo_images if n_synthetic is None else n_synthetic
    size = settings.demo_size if size is None else size
    with_samples = settings.demo_samples if with_samples is None else with_samples
    if any(p.name == DEMO_NAME for p in studio.list_projects(admin_user)):
        return None
    project = studio.create_project(admin_user, DEMO_NAME, DEMO_DESCRIPTION)
    for i in range(n_synthetic):
        image, labels = generate(size, seed=i)
        info = studio.add_image(admin_user, project.id, f"synthetic_{i:02d}.png", _png_bytes(image))
        _label_objects(studio, admin_user, info.id, labels, OBJECTS_PER_IMAGE, i, "drawn")
    for name in SAMPLE_FILES if with_samples else ():
        path = _sample_dir() / name
        if path.is_file():
            info = studio.add_image(admin_user, project.id, name, path.read_bytes())
            if label_samples and name in SAMPLE_OBJECTS:
                _label_sample(studio, admin_user, info.id, SAMPLE_OBJECTS[name], seed=len(name))
    return project


def _label_objects(
    studio: Studio, user: User, image_id: int, labels: np.ndarray, k: int, seed: int, source: str
) -> np.ndarray:
    """Label ``k`` whole objects of ``labels`` and a background mark beside each (as the Annotate
    page asks of annotators); returns the marked pixels."""
    from spoco_core.synthetic import background_beside

    marked = np.zeros(labels.shape, bool)
    for object_id in _pick_objects(labels, k, seed=seed):
        studio.add_annotation(user, image_id, "object", labels == object_id, source=source)
        mark = background_beside(labels, labels == object_id, BACKGROUND_SIDE, [seed, object_id], ~marked)
        if mark.any():
            studio.add_annotation(user, image_id, "background", mark, source="drawn")
            marked |= mark
    return marked


def _label_sample(studio: Studio, user: User, image_id: int, k: int, seed: int) -> None:
    """Accept ``k`` whole classical proposals and mark background beside them and in the open.

    The marks lie on the pipeline's background, the only background known on an image without
    ground truth.
    """
    from spoco_core.synthetic import background_squares

    proposals = studio.proposals(user, image_id)
    marked = _label_objects(studio, user, image_id, proposals, k, seed, "accepted")
    taken = np.where(marked, -1, proposals)
    for square in _squares(background_squares(taken, OPEN_BACKGROUND_MARKS, BACKGROUND_SIDE, seed)):
        studio.add_annotation(user, image_id, "background", square, source="drawn")


def _squares(mask: np.ndarray) -> list[np.ndarray]:
    """One mask per connected square: each mark is its own annotation, as an annotator draws them."""
    from scipy import ndimage

    parts, n = ndimage.label(mask)
    return [parts == i for i in range(1, n + 1)]
