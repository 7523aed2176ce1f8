"""One module per CLI sub-command; each has ``register(subparsers)`` and ``run(args) -> int``.

``python -m spoco_core`` imports only the module of the command it runs (a command's module may
import torch, hdbscan...); the others are listed by :data:`SUMMARIES` alone."""

COMMANDS = ("synth", "evaluate", "train", "segment", "suggest", "fetch-data")

SUMMARIES = {
    "synth": "write synthetic microscopy-like images with instance ground truth",
    "evaluate": "compare predicted instance labels with ground truth (mAP, AP50, SBD, |DiC|, P/R/F1)",
    "train": "train a SPOCO embedding model from sparse instance labels",
    "segment": "segment a folder of images with a trained model",
    "suggest": "rank predicted objects by instability: the ones worth labelling next",
    "fetch-data": "download the real HeLa nuclei development data into the user's cache",
}
"""One line per command for ``python -m spoco_core --help``, shown without importing the command."""
