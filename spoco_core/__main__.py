"""``python -m spoco_core <command>``: the headless pipeline for power users."""

from __future__ import annotations

import argparse
import importlib
import sys

from spoco_core.commands import COMMANDS, SUMMARIES


def _chosen(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), or None."""
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full arguments of the command ``argv`` names and the other commands by
    their one-line summary: only the chosen command's module is imported, so ``suggest --help``
    does not wait for the modules (torch, hdbscan) of every command. Without ``argv``: all."""
    chosen = _chosen(argv) if argv is not None else None
    parser = argparse.ArgumentParser(prog="python -m spoco_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if argv is not None and name != chosen:
            sub.add_parser(name, help=SUMMARIES[name])
            continue
        try:
            module = importlib.import_module(f"spoco_core.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"spoco_core.commands.{name.replace('-', '_')}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OSError as exc:  # a path that exists, is a folder, cannot be written...: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
