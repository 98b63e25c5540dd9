"""``python -m b24batch``: the command line (see :mod:`b24batch.cli`)."""

import sys

from b24batch.cli import main

sys.exit(main())
