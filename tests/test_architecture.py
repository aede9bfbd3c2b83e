"""The bundle is the contract: index/ and service/ never import training code or its heavy deps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
{imports}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {{'training', 'timm', 'torchvision'}})))
"""


def imported_after(imports: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_index_and_service_never_import_training():
    assert imported_after("import index.build, index.cli, service.app, service.cli, lookalike.bundle") == []


@pytest.mark.parametrize("forbidden", ["timm", "torchvision"])
def test_the_command_line_does_not_load_training_dependencies_to_serve(forbidden):
    # `lookalike serve` builds the whole parser, training's sub-commands included
    assert forbidden not in imported_after("from lookalike.cli import build_parser; build_parser()")
