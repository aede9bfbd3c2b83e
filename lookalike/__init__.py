"""Lookalike: face verification and visual search, one installed package.

This folder is the shared contract every stage imports and that imports none of them:

- `bundle`: the exported-encoder format (the only thing index and service know of a model);
- `images`: decoding and the preprocessing every stage applies identically;
- `registry`: name -> class, so a string in a config picks a loss, miner or index kind;
- `errors`: `LookalikeError`, the base of every error raised for bad input.

The stages are sub-packages that live in the repository's top-level folders:
`lookalike.training` (training/), `lookalike.index` (index/), `lookalike.service` (service/) and
`lookalike.cli` (cli/: the `lookalike` command, the demo and the server launcher).
Importing this package stays cheap: it loads no stage and no PyTorch.
"""

__version__ = "0.1.0"
