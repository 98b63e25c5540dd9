"""Benchmarks for b24batch against raw requests and the other Python clients (issue #7).

Run ``python -m tests.benchmarks`` (see ``docs/benchmarks.md``). Not collected by pytest: no
module here is named ``test_*``, and ``conftest.py`` ignores the folder as well.
"""
