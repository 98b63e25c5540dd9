"""Keep pytest out of this folder: the benchmarks run as ``python -m tests.benchmarks``."""

collect_ignore_glob = ["*"]
