"""b24batch: a synchronous Python SDK for the Bitrix24 ``batch`` method, REST 3.0 and classic.

Up to 50 REST calls in one HTTP request, results decoded into attrs classes keyed by position
or by command name:

```python
from b24batch import B24Hook, BatchV3

with B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/SECRET/") as b24:
    result = BatchV3(b24).make([("tasks.task.get", {"id": 1}), ("tasks.task.get", {"id": 2})])
    if result.is_success:
        print(result.data)
```

Import public names from here only; the submodules' layout may change.
"""

import typing as _typing
from importlib import import_module as _import_module

from b24batch._engine.port import Client
from b24batch._limits.policy import LimitState, RateLimit
from b24batch._version import __version__
from b24batch.batch import BatchV2, BatchV3
from b24batch.chunks import BatchByChunkV2, BatchByChunkV3
from b24batch.client import B24Hook, B24OAuth
from b24batch.client import install_actions as _install_actions
from b24batch.commands import Command, ref, ref_array
from b24batch.errors import (
    AjaxError,
    AuthError,
    B24Error,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.kinds import CODE_KINDS, ErrorKind, kind_of_code
from b24batch.options import DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT, ClientOptions
from b24batch.results import AjaxResult, BatchResult, ChunkedResult, ChunkError, FieldError, Time
from b24batch.retry import RetryPolicy
from b24batch.transport import DEADLINE_MARGIN, DEFAULT_MAX_RESPONSE_BYTES

if _typing.TYPE_CHECKING:
    from b24batch._limits.redis import DEFAULT_PREFIX, RedisStore
    from b24batch._limits.shared import DEFAULT_RECHECK, DEFAULT_STORE_TIMEOUT, LimitStore
    from b24batch._limits.sqlite import SQLiteStore
    from b24batch.actions import Actions
    from b24batch.apps import InstalledPortal, OAuthApp
    from b24batch.calls import CallV2, CallV3
    from b24batch.lists import CallListV2, CallListV3, FetchListV2, FetchListV3

# Names whose modules load on first access (PEP 562), not at ``import b24batch``: a script that
# sends batches through a webhook never needs the OAuth wing, the limit stores (sqlite3), the
# list walk or the single-call faces, yet every start, CLI run and worker process paid for them
# (a third of the package's own import time; CHANGELOG.md has the numbers). Each becomes a plain
# module-level name once read; the ``TYPE_CHECKING`` block above is what type checkers see.
_LAZY: dict[str, str] = {
    "CallListV2": "b24batch.lists",
    "CallListV3": "b24batch.lists",
    "CallV2": "b24batch.calls",
    "CallV3": "b24batch.calls",
    "DEFAULT_PREFIX": "b24batch._limits.redis",
    "DEFAULT_RECHECK": "b24batch._limits.shared",
    "DEFAULT_STORE_TIMEOUT": "b24batch._limits.shared",
    "FetchListV2": "b24batch.lists",
    "FetchListV3": "b24batch.lists",
    "InstalledPortal": "b24batch.apps",
    "LimitStore": "b24batch._limits.shared",
    "OAuthApp": "b24batch.apps",
    "RedisStore": "b24batch._limits.redis",
    "SQLiteStore": "b24batch._limits.sqlite",
}


def __getattr__(name: str) -> object:
    """Import a lazily loaded public name (see ``_LAZY``) on first access, then keep it."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _actions(client: Client) -> "Actions":
    # ``b24.actions.v3.batch`` (the JS SDK's path): the faces sit above the client, which never
    # imports them, so the package hands the client this factory before any client exists.
    # ``b24batch.actions`` holds every face, the lazy ones too: it loads on the first use.
    from b24batch.actions import Actions

    return Actions(client)


_install_actions(_actions)

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/guarantees/test_public_api.py checks
    "AjaxError",
    "AjaxResult",
    "AuthError",
    "B24Error",
    "B24Hook",
    "B24OAuth",
    "BatchByChunkV2",
    "BatchByChunkV3",
    "BatchResult",
    "BatchV2",
    "BatchV3",
    "CODE_KINDS",
    "CallListV2",
    "CallListV3",
    "CallV2",
    "CallV3",
    "ChunkError",
    "ChunkedResult",
    "Client",
    "ClientOptions",
    "Command",
    "DEADLINE_MARGIN",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_PREFIX",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RECHECK",
    "DEFAULT_STORE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DecodeError",
    "ErrorKind",
    "FetchListV2",
    "FetchListV3",
    "FieldError",
    "InstalledPortal",
    "LimitState",
    "LimitStore",
    "OAuthApp",
    "OperatingLimitError",
    "RateLimit",
    "RateLimitError",
    "RedisStore",
    "RetryPolicy",
    "SQLiteStore",
    "SdkError",
    "SdkTypeError",
    "Time",
    "TransportError",
    "__version__",
    "kind_of_code",
    "ref",
    "ref_array",
]
