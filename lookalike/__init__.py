"""Lookalike: shared contract between training, index and service.

`lookalike.bundle` is the exported-encoder format (the only thing index/ and service/ know
about a trained model); `lookalike.images` holds image decoding shared by every stage;
`lookalike.cli` is the single `lookalike` command that dispatches to each stage's CLI.
"""

__version__ = "0.1.0"
