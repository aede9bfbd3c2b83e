"""The main job end to end: `lookalike demo` trains, indexes, serves and queries (digits, 1 epoch)."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_demo_runs_the_whole_job_on_the_embedded_dataset(tmp_path):
    result = run_cli("demo", "--work", str(tmp_path), "--epochs", "1", "--no-serve", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "POST /search" in out and "top identities" in out
    assert out.count("POST /verify") == 2
    assert "curl -F image=@" in out and "/verify" in out
    assert len(list((tmp_path / "digits").iterdir())) == 10
    assert (tmp_path / "run" / "bundle" / "bundle.json").is_file() and (tmp_path / "index" / "current").is_symlink()
