"""`python -m sameface.cli`."""

import sys

from . import main

sys.exit(main())
