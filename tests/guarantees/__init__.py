"""Guarantees across the package: secrets, frames, pickling, the public surface, packaging."""
