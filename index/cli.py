"""`lookalike index build|add|remove|info`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lookalike.errors import LookalikeError
from lookalike.index.build import add_to_index, build_index, remove_from_index
from lookalike.index.kinds import INDEX_KINDS
from lookalike.index.lock import DEFAULT_TIMEOUT_S
from lookalike.index.store import GalleryIndex
from lookalike.index.versions import current_version


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    build = actions.add_parser("build", help="embed a gallery and publish a new index version", formatter_class=fmt)
    build.add_argument("--bundle", type=Path, required=True, help="exported encoder bundle")
    build.add_argument("--gallery", type=Path, required=True, help="folder of <label>/<image> or a path,label CSV")
    build.add_argument("--out", type=Path, required=True, help="index root (holds versions/ and current)")
    build.add_argument("--kind", default="flat", choices=INDEX_KINDS.names(), help="FAISS index type")
    build.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    add_lock_timeout(build)
    build.set_defaults(handler=run_build)

    add = actions.add_parser("add", help="add images to the live index without a rebuild", formatter_class=fmt)
    add.add_argument("--bundle", type=Path, required=True)
    add.add_argument("--gallery", type=Path, required=True, help="the new images, laid out as for build")
    add.add_argument("--index", type=Path, required=True, help="index root")
    add.add_argument("--batch-size", type=int, default=64)
    add_lock_timeout(add)
    add.set_defaults(handler=run_add)

    remove = actions.add_parser("remove", help="remove entries by id or label", formatter_class=fmt)
    remove.add_argument("--index", type=Path, required=True, help="index root")
    remove.add_argument("--id", type=int, action="append", dest="ids", help="entry id (repeatable)")
    remove.add_argument("--label", action="append", dest="labels", help="every entry of this label (repeatable)")
    add_lock_timeout(remove)
    remove.set_defaults(handler=run_remove)

    info = actions.add_parser("info", help="print the live version's manifest")
    info.add_argument("--index", type=Path, required=True, help="index root")
    info.set_defaults(handler=run_info)


def add_lock_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait while another build/add/remove holds the index root",
    )


def run_build(args: argparse.Namespace) -> int:
    built = build_index(args.bundle, args.gallery, args.out, args.kind, args.batch_size, args.lock_timeout)
    print(json.dumps({"version": str(built.directory), **built.manifest.model_dump()}, indent=2))
    return 0


def run_add(args: argparse.Namespace) -> int:
    updated = add_to_index(args.bundle, args.gallery, args.index, args.batch_size, args.lock_timeout)
    print(json.dumps({"version": str(updated.directory), "count": updated.size}))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    if not args.ids and not args.labels:
        raise LookalikeError("say what to remove with --id and/or --label")
    updated, removed = remove_from_index(args.index, args.ids, args.labels, args.lock_timeout)
    print(json.dumps({"version": str(updated.directory), "removed": removed, "count": updated.size}))
    return 0


def run_info(args: argparse.Namespace) -> int:
    version = current_version(args.index)
    print(json.dumps({"version": str(version), **GalleryIndex.open(version).manifest.model_dump()}, indent=2))
    return 0
