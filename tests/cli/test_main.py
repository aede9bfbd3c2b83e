"""The `lookalike` command: which errors are messages and which are bugs, help, and flag plumbing."""

from __future__ import annotations

import argparse

import pytest

from lookalike.cli import COMMANDS, build_parser, main
from lookalike.errors import LookalikeError
from lookalike.training import TrainConfig
from lookalike.training.cli import SWITCHES


def test_a_project_error_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert main(["index", "info", "--index", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no published index" in err and err.count("\n") == 1


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken_handler(_args) -> int:
        raise ValueError("a genuine bug, not bad input")

    monkeypatch.setattr("lookalike.index.cli.run_info", broken_handler)
    with pytest.raises(ValueError, match="genuine bug"):
        main(["index", "info", "--index", str(tmp_path)])


def test_every_project_error_derives_from_the_one_base():
    from lookalike.bundle import BundleError
    from lookalike.cli import ServerStartError
    from lookalike.errors import ConfigError
    from lookalike.index import GalleryError, IndexFormatError, IndexMismatchError, NoIndexError
    from lookalike.registry import UnknownNameError
    from lookalike.service.errors import ApiError
    from lookalike.training import DataError

    errors = [
        BundleError,
        ServerStartError,
        ConfigError,
        GalleryError,
        IndexFormatError,
        IndexMismatchError,
        NoIndexError,
        UnknownNameError,
        ApiError,
        DataError,
    ]
    assert all(issubclass(e, LookalikeError) for e in errors)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser(["--help"]).parse_args(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out and command.help in out for name, command in COMMANDS.items())


def test_every_train_config_field_is_a_flag():
    """Generated from TrainConfig's fields: a new field cannot be forgotten on the command line."""
    parser = build_parser(["train"])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {action.dest for action in commands.choices["train"]._actions} - {"help", "config"}
    assert flags == set(TrainConfig.model_fields)


def test_every_train_switch_reaches_the_config(tmp_path, monkeypatch):
    """Each --x/--no-x switch, set against its default, arrives in the TrainConfig the loop gets."""
    seen: list[TrainConfig] = []
    monkeypatch.setattr("lookalike.training.cli.train", lambda cfg: seen.append(cfg) or {})
    flags = [
        f"--{'no-' if TrainConfig.model_fields[name].default else ''}{name.replace('_', '-')}" for name in SWITCHES
    ]
    assert main(["train", "--data", str(tmp_path), "--epochs", "3", *flags]) == 0
    (cfg,) = seen
    assert cfg.epochs == 3
    assert {name: getattr(cfg, name) for name in SWITCHES} == {
        name: not TrainConfig.model_fields[name].default for name in SWITCHES
    }


def test_loss_and_miner_arguments_reach_the_config(tmp_path, monkeypatch):
    seen: list[TrainConfig] = []
    monkeypatch.setattr("lookalike.training.cli.train", lambda cfg: seen.append(cfg) or {})
    argv = ["train", "--data", str(tmp_path), "--loss", "multi_similarity", "--miner", "multi_similarity"]
    assert main([*argv, "--loss-args", "alpha=3", "beta=40", "--miner-args", "epsilon=0.2"]) == 0
    assert seen[0].loss_args == {"alpha": 3.0, "beta": 40.0} and seen[0].miner_args == {"epsilon": 0.2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--data", "d", "--loss", "multi_similarity", "--miner", "multi_similarity", "--margin", "0.3"],
            "--margin reaches neither the loss 'multi_similarity'",
        ),
        (["train", "--data", "d", "--epochs", "0"], "epochs: Input should be greater than or equal to 1"),
        (["train", "--data", "d", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
        (["serve", "--max-batch", "0"], "max_batch: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_options_are_named_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
