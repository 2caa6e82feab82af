"""`python -m workbench` is `nanochat-workbench`."""

import sys

from workbench.cli import main

sys.exit(main())
