"""`python -m secautod` runs the command line."""

import sys

from secautod.cli import main

sys.exit(main())
