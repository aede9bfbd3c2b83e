"""The distribution: one top-level package in the wheel, and both install modes importable from
anywhere, with the stages under `lookalike.` so nothing else on sys.path can clash with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import LEGACY, ROOT

SOURCES = ["pyproject.toml", "README.md", "lookalike", "cli", "training", "index", "service"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the tracked sources (the checkout itself is left untouched)."""
    work = tmp_path_factory.mktemp("wheel")
    (work / "src").mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, work / "src" / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", work / "dist", "."],
        cwd=work / "src",
        check=True,
        capture_output=True,
    )
    (built,) = (work / "dist").glob("lookalike-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"lookalike"}
    for module in ("cli/__main__.py", "training/loop.py", "training/metric_learning/miners.py", "index/store.py"):
        assert f"lookalike/{module}" in names
    assert "lookalike/service/routers/search.py" in names and "lookalike/service/launcher.py" not in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lookalike = lookalike.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def shadowing_folders(cwd: Path) -> None:
    """A user's own `service`, `index` and `training` packages in the working directory."""
    for name in ("service", "index", "training"):
        (cwd / name).mkdir()
        (cwd / name / "__init__.py").write_text("raise ImportError('the user\\'s own package was imported')\n")


@pytest.mark.slow
def test_the_installed_wheel_works_beside_a_users_own_service_package(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    cwd = tmp_path / "user"
    cwd.mkdir()
    shadowing_folders(cwd)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import lookalike.training, lookalike.index, lookalike.service; print(lookalike.service.__file__)"
    found = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(site)
    info = subprocess.run(
        [site / "bin" / "lookalike", "index", "info", "--index", LEGACY / "index"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0 and '"count": 6' in info.stdout, info.stderr
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookalike.cli",
            "evaluate",
            "--bundle",
            LEGACY / "bundle",
            "--data",
            LEGACY / "gallery",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0 and "6 images of 3 classes" in evaluated.stdout, evaluated.stderr


def test_the_editable_install_maps_each_folder_to_its_subpackage(tmp_path):
    shadowing_folders(tmp_path)
    probe = "import lookalike, lookalike.cli, lookalike.training, lookalike.index, lookalike.service as s; "
    probe += "print(lookalike.__file__); print(s.__file__)"
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    contract, service = (Path(line) for line in found.stdout.split())
    if not contract.is_relative_to(ROOT):
        pytest.skip(f"lookalike is installed from {contract}, not in editable mode from this checkout")
    assert service == ROOT / "service" / "__init__.py"
