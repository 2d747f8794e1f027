"""``python -m producers.cli``: the same as ``contact-lookup``."""

import sys

from producers.cli import main

sys.exit(main())
