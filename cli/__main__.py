"""`python -m lookalike.cli ...` (what torchrun and the server launcher run)."""

import sys

from lookalike.cli.main import main

sys.exit(main())
