"""Tests of the protocols (b24batch._protocols), mirroring their modules."""
