"""Tests of the FakePortal (``b24batch.testing``), mirroring its modules."""
