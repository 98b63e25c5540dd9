"""Tests of the public faces and models, end to end from ``b24batch``."""
