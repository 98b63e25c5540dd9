"""Tests of the engine (b24batch._engine), mirroring its modules."""
