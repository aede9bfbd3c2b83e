"""The `lookalike` command: one entry point, one sub-command family per stage.

Bad input ends with `error: <what is wrong>` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from lookalike.bundle import BundleError


def build_parser() -> argparse.ArgumentParser:
    from index.cli import register as register_index
    from lookalike.demo import register as register_demo
    from service.cli import register as register_service
    from training.cli import register as register_training

    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Face verification and visual search: "
        "train an encoder, index a gallery, serve /search and /verify.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_training(commands)
    register_index(commands)
    register_service(commands)
    register_demo(commands)
    return parser


def describe(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in err.errors())
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except (ValueError, BundleError, OSError) as err:
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
