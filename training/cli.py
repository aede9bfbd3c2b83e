"""`lookalike train` and `lookalike evaluate`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from lookalike.training.config import TrainConfig, load_config
from lookalike.training.evaluate import evaluate_bundle
from lookalike.training.loop import train


def flag_type(annotation: object) -> tuple[Callable[[str], Any], tuple[str, ...] | None]:
    """argparse's `type` (and `choices`) for a TrainConfig field: `X | None` is X, a Literal its
    values, a dict one NAME=VALUE pair per word."""
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return str, get_args(annotation)
    if get_origin(annotation) is dict:
        return name_value, None
    return annotation, None  # type: ignore[return-value]


def name_value(word: str) -> tuple[str, str]:
    name, equals, value = word.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {word!r}")
    return name, value


# Every TrainConfig field is a flag, generated from the field itself, so none can be forgotten:
# booleans become --name/--no-name pairs, the rest take a value; help is the field's description.
SWITCHES = tuple(name for name, field in TrainConfig.model_fields.items() if field.annotation is bool)
FLAGS = {name: flag_type(f.annotation) for name, f in TrainConfig.model_fields.items() if name not in SWITCHES}


def configure_train(train: argparse.ArgumentParser) -> None:
    train.description = (
        "Train on a folder with one sub-folder per identity/class; held-out classes are evaluated after every epoch. "
        "With --ssl, learn from unlabelled images (a flat folder is enough), then fine-tune with --pretrained."
    )
    fields = TrainConfig.model_fields
    for name, (kind, choices) in FLAGS.items():
        field = fields[name]
        default = None if field.is_required() else field.default
        pairs = kind is name_value
        train.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            choices=choices,
            default=None,
            nargs="+" if pairs else None,
            metavar="NAME=VALUE" if pairs else None,
            help=f"{field.description or ''} (default: {default})".strip(),
        )
    for name in SWITCHES:
        train.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{fields[name].description or name} (default: {fields[name].default})",
        )
    train.add_argument("--config", type=Path, help="YAML file of options; flags given here override it")
    train.set_defaults(handler=run_train)


def configure_evaluate(evaluate: argparse.ArgumentParser) -> None:
    evaluate.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    evaluate.add_argument("--bundle", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True, help="folder with one sub-folder per class")
    evaluate.add_argument("--pairs", type=Path, help="LFW-format pairs.txt for 10-fold verification")
    evaluate.add_argument("--no-nmi", action="store_true", help="skip k-means NMI (skipped anyway over 500 classes)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    evaluate.set_defaults(handler=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in [*FLAGS, *SWITCHES]}
    overrides = {name: dict(value) if isinstance(value, list) else value for name, value in overrides.items()}
    cfg = load_config(args.config, overrides)
    summary = train(cfg)
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    result = evaluate_bundle(args.bundle, args.data, args.pairs, nmi=False if args.no_nmi else None)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['images']} images of {result['classes']} classes ({result['skipped_images']} skipped)")
    for name, value in result["retrieval"].items():
        print(f"  {name:24s} {value:.4f}")
    for name, value in result.get("verification", {}).items():
        print(f"  pairs {name:18s} {value:.4f}")
    return 0
