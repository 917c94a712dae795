"""``python -m studies`` does what the ``tune`` command does."""

import sys

from studies.cli import main

sys.exit(main())
