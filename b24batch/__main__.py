"""``python -m b24batch``: runs the command line of ``cli.py``.

Nothing else: the commands, their output and their exit status are ``cli.py``'s.
"""

import sys

from b24batch.cli import main

sys.exit(main())
