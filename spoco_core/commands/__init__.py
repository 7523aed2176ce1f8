"""One module per CLI sub-command; each has ``register(subparsers)`` and ``run(args) -> int``."""

COMMANDS = ("synth", "evaluate", "train", "segment", "suggest", "fetch-data")
