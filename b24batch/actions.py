"""``client.actions.v3.call``, ``.batch``, ``.batch_by_chunk``, ``.call_list``, ``.fetch_list``.

The JS SDK's paths to the faces (the same under ``v2``). A facade only, above the faces;
``b24batch/__init__.py`` hands ``Actions`` to the client as the factory ``client.actions``
calls, so the client never imports a face.
"""

from __future__ import annotations

from b24batch._engine.port import Client
from b24batch.batch import BatchV2, BatchV3
from b24batch.calls import CallV2, CallV3
from b24batch.chunks import BatchByChunkV2, BatchByChunkV3
from b24batch.lists import CallListV2, CallListV3, FetchListV2, FetchListV3

__all__ = ["Actions"]


class _V3:
    def __init__(self, client: Client) -> None:
        self.call = CallV3(client)
        self.batch = BatchV3(client)
        self.batch_by_chunk = BatchByChunkV3(client)
        self.call_list = CallListV3(client)
        self.fetch_list = FetchListV3(client)


class _V2:
    def __init__(self, client: Client) -> None:
        self.call = CallV2(client)
        self.batch = BatchV2(client)
        self.batch_by_chunk = BatchByChunkV2(client)
        self.call_list = CallListV2(client)
        self.fetch_list = FetchListV2(client)


class Actions:
    """``client.actions.v3.call`` / ``.batch`` / ``.batch_by_chunk`` / ``.call_list`` /
    ``.fetch_list``, and the same under ``v2``."""

    def __init__(self, client: Client) -> None:
        self.v3 = _V3(client)
        self.v2 = _V2(client)
