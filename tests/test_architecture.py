"""The shape of the code, checked: one namespace, a contract that imports no stage, stages that
reach each other only through their public names, and a service that never loads training code.

Static checks read every import statement (those inside functions too, where a dependency
circle likes to hide); runtime checks import in a fresh interpreter and look at `sys.modules`.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lookalike
from tests.helpers import ROOT

CONTRACT = ROOT / "lookalike"
STAGES = {"training": ROOT / "training", "index": ROOT / "index", "service": ROOT / "service", "cli": ROOT / "cli"}
SOURCE_FOLDERS = [CONTRACT, *STAGES.values(), ROOT / "bench", ROOT / "tests"]


def python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def imported_modules(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file: `import a.b` gives ("a.b", []), `from a import
    x, y` gives ("a", ["x", "y"]); relative imports are resolved against the file's package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; write the full lookalike.* name"
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "lookalike" and parts[1] in STAGES else None


def test_no_file_imports_a_stage_by_its_folder_name():
    # `import index` works from the repository root by accident of sys.path, never once installed
    bare = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in python_files(*SOURCE_FOLDERS)
        for module, _ in imported_modules(path)
        if module.split(".")[0] in STAGES
    ]
    assert bare == []


def test_the_contract_imports_no_stage():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in python_files(CONTRACT)
        for module, names in imported_modules(path)
        if stage_of(module) or (module == "lookalike" and set(names) & set(STAGES))
    ]
    assert offending == []


def test_index_and_service_never_import_training():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in python_files(STAGES["index"], STAGES["service"])
        for module, _ in imported_modules(path)
        if stage_of(module) == "training"
    ]
    assert offending == []


def public_names(package: str) -> set[str] | None:
    """The `__all__` of a package (a folder with `__init__.py`), None for a plain module."""
    imported = importlib.import_module(package)
    if not hasattr(imported, "__path__"):
        return None
    return set(getattr(imported, "__all__", ()))


def test_stages_and_benchmarks_use_each_others_public_names_only():
    """Across stages, imports name a package's `__all__` (as timm's `models/__init__` exports),
    never a module behind it. Tests are exempt: unit tests reach inside on purpose."""
    offending = []
    for path in python_files(*STAGES.values(), ROOT / "bench"):
        own = next((name for name, folder in STAGES.items() if folder in path.parents), None)
        for module, names in imported_modules(path):
            target = stage_of(module)
            if target is None or target == own:
                continue
            exported = public_names(module)
            if exported is None:
                offending.append(f"{path.relative_to(ROOT)}: imports module {module}, not a package's public names")
            elif not names or not set(names) <= exported:
                missing = sorted(set(names) - exported) or ["(the package itself)"]
                offending.append(f"{path.relative_to(ROOT)}: {module} does not export {missing}")
    assert offending == []


def test_the_production_service_starts_no_processes():
    # launching a server process is the command line's job (lookalike.cli.launcher), not the service's
    assert [p for p in python_files(STAGES["service"]) if "subprocess" in dict(imported_modules(p))] == []


PROBE = """
import json, sys
{code}
stages = tuple(f"lookalike.{{s}}" for s in ("training", "index", "service", "cli"))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("timm", "torchvision") or m.startswith(stages))))
"""


def loaded_after(code: str, cwd: Path) -> set[str]:
    """Project and training-only modules in `sys.modules` after `code`, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def top_packages(modules: set[str]) -> set[str]:
    return {".".join(m.split(".")[:2]) if m.startswith("lookalike.") else m.split(".")[0] for m in modules}


def test_importing_the_contract_loads_no_stage(tmp_path):
    assert loaded_after("import lookalike, lookalike.bundle, lookalike.images, lookalike.registry", tmp_path) == set()


def test_serving_loads_no_training_code(tmp_path, tiny_bundle, gallery):
    from lookalike.index import build_index

    build_index(tiny_bundle, gallery, tmp_path / "index")
    code = f"""
from pathlib import Path
from lookalike.cli import build_parser
build_parser(["serve", "--bundle", "x"]).parse_args(["serve", "--bundle", "x"])
from lookalike.service import Settings, create_app
create_app(Settings(bundle=Path({str(tiny_bundle)!r}), index=Path({str(tmp_path / "index")!r})))
"""
    loaded = top_packages(loaded_after(code, tmp_path))
    assert loaded == {"lookalike.cli", "lookalike.service", "lookalike.index"}


@pytest.mark.parametrize(
    ("argv", "stages"),
    [
        ([], {"lookalike.cli"}),
        (["index", "info"], {"lookalike.cli", "lookalike.index"}),
        (["-v", "evaluate"], {"lookalike.cli", "lookalike.training", "timm", "torchvision"}),
    ],
)
def test_the_command_line_loads_only_the_stage_it_runs(tmp_path, argv, stages):
    assert top_packages(loaded_after(f"from lookalike.cli import build_parser; build_parser({argv!r})", tmp_path)) == (
        stages
    )


def all_project_modules() -> list[str]:
    """The contract's modules and every module of every stage package, by their installed names."""
    names = [m.name for m in pkgutil.iter_modules(lookalike.__path__, "lookalike.")]
    for stage in STAGES:
        package = importlib.import_module(f"lookalike.{stage}")
        names += [package.__name__, *(m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}."))]
    return sorted(set(names) - {"lookalike.cli.__main__"})


def test_every_module_lives_under_the_one_package_and_logs_under_its_name():
    names = all_project_modules()
    assert {n.split(".")[1] for n in names} >= {"bundle", "images", "registry", "errors", *STAGES}
    loggers = {}
    for name in names:
        module = importlib.import_module(name)
        if isinstance(getattr(module, "log", None), logging.Logger):
            loggers[name] = module.log.name
    assert loggers and all(logger == module for module, logger in loggers.items()), loggers
