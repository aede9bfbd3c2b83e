"""The `lookalike` command: one entry point, each sub-command provided by the stage it belongs to.

`COMMANDS` names, for every sub-command, the module that configures it. Only the module of the
command being run is imported, so `lookalike serve` costs no training import (no timm, no
torchvision) and `lookalike --help` imports no stage at all.

Errors: a `LookalikeError` (bad input) ends with `error: <what is wrong>` on stderr and exit
status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from lookalike.errors import LookalikeError


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line help, and `module:function` that adds its arguments and handler."""

    help: str
    configure: str

    def configure_parser(self, parser: argparse.ArgumentParser) -> None:
        module, function = self.configure.split(":")
        getattr(importlib.import_module(module), function)(parser)


COMMANDS: dict[str, Command] = {
    "train": Command("train an embedding model and export a bundle", "lookalike.training.cli:configure_train"),
    "evaluate": Command("measure a bundle on a labelled folder", "lookalike.training.cli:configure_evaluate"),
    "models": Command("convert a pretrained face encoder and bundle it", "lookalike.training.pretrained.cli:configure"),
    "index": Command("build and maintain a gallery index", "lookalike.index.cli:configure"),
    "serve": Command("serve /search, /verify and /embed over HTTP", "lookalike.service.cli:configure"),
    "demo": Command("train, index, serve and query on an embedded dataset", "lookalike.cli.demo:configure"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command is listed, only the one `argv` names is configured."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Face verification and visual search: "
        "train an encoder, index a gallery, serve /search and /verify.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        if name == chosen:
            command.configure_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except LookalikeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
