"""Tests of the client-side limits and their stores (b24batch._limits)."""
