"""``client.actions.v3.batch`` and ``.batch_by_chunk``: the JS SDK's paths to the batch classes.

A facade only, above both batch modules, so neither the client nor the batch layer imports
upward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b24batch.batch import BatchV3
from b24batch.chunks import BatchByChunkV3

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["Actions"]


class _V3:
    def __init__(self, client: _Client) -> None:
        self.batch = BatchV3(client)
        self.batch_by_chunk = BatchByChunkV3(client)


class Actions:
    """``client.actions.v3.batch`` and ``client.actions.v3.batch_by_chunk``."""

    def __init__(self, client: _Client) -> None:
        self.v3 = _V3(client)
