"""The package's version, in one place: setup.cfg and ``b24batch.__version__`` read it.

Nothing else, and no imports, so the build reads it without importing the package.
"""

__version__ = "0.1.0"
