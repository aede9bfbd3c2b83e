"""The application layer: the `lookalike` command (`main`), the demo and the server launcher.

It is the only package that may import every stage, and it imports each one only when the
command that needs it runs: `lookalike serve` never loads training code, `lookalike --help`
loads no stage at all. `start_server` runs `lookalike serve` as a child process for the demo,
the benchmarks and the tests; it is not part of the production service.
"""

from lookalike.cli.launcher import ServerStartError, free_port, start_server, stop_server
from lookalike.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "ServerStartError", "build_parser", "free_port", "main", "start_server", "stop_server"]
