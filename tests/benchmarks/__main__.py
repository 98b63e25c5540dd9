"""``python -m tests.benchmarks``: run the benchmarks and update docs/benchmarks.md."""

import sys

from tests.benchmarks.run import main

sys.exit(main())
