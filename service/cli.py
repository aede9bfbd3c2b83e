"""`lookalike serve`: run the API with uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from lookalike.errors import ConfigError
from lookalike.service.app import create_app
from lookalike.service.settings import Settings


def configure(serve: argparse.ArgumentParser) -> None:
    serve.description = (
        "Serve /search, /verify and /embed over HTTP. Settings also come from LOOKALIKE_* environment "
        "variables (e.g. LOOKALIKE_API_KEY); flags given here win."
    )
    serve.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    serve.add_argument("--bundle", type=Path, help="exported encoder bundle (LOOKALIKE_BUNDLE)")
    serve.add_argument("--index", type=Path, help="index root (LOOKALIKE_INDEX)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-batch", type=int, help="most images per forward pass (LOOKALIKE_MAX_BATCH)")
    serve.add_argument("--max-wait-ms", type=float, help="batching wait (LOOKALIKE_MAX_WAIT_MS)")
    serve.add_argument("--api-key", help="require this X-API-Key (LOOKALIKE_API_KEY)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    overrides = {
        "bundle": args.bundle,
        "index": args.index,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "api_key": args.api_key,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        raise ConfigError.from_validation(err) from None
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0
