"""Helpers the tests share: real servers (loopback HTTP, redis-server) and the reference PHP."""
