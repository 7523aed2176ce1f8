"""``python -m spoco_core <command>``: the headless pipeline for power users."""

from __future__ import annotations

import argparse
import importlib
import sys

from spoco_core.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spoco_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"spoco_core.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"spoco_core.commands.{name.replace('-', '_')}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OSError as exc:  # a path that exists, is a folder, cannot be written...: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
