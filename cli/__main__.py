"""`python -m cli ...` (and `accelerate launch -m cli ...`) runs the `eqcodec` command."""

import sys

from cli import main

sys.exit(main())
