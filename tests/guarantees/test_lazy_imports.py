"""``import b24batch`` loads what a batch needs; the rarely used faces load on first use.

Each check runs in a fresh interpreter (this one has imported everything long ago) and looks
only at the modules loaded after the interpreter started, so whatever ``site`` or a coverage
hook loads first cannot hide a regression or fake one.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import b24batch

LAZY = (
    "b24batch.actions",
    "b24batch.apps",
    "b24batch._auth",
    "b24batch._engine.journal",
    "b24batch._limits.redis",
    "b24batch._limits.shared",
    "b24batch._limits.sqlite",
    "b24batch.calls",
    "b24batch.lists",
    "cattrs",
    "sqlite3",
)
"""Modules ``import b24batch`` and a plain webhook batch leave unloaded."""


def _loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter loads while it runs ``code``."""
    script = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _lazy_in(loaded: set[str]) -> set[str]:
    return {name for name in loaded for lazy in LAZY if name == lazy or name.startswith(lazy + ".")}


def test_import_loads_none_of_the_rarely_used_modules() -> None:
    """``import b24batch`` loads the batch faces and the client, but no OAuth, store, list."""
    loaded = _loaded_by("import b24batch")
    assert {"b24batch.batch", "b24batch.chunks", "b24batch.client"} <= loaded
    assert _lazy_in(loaded) == set()


def test_a_webhook_batch_by_chunk_loads_none_of_them() -> None:
    """The common script, a chunked batch over a webhook, runs without any of them."""
    loaded = _loaded_by(
        "from b24batch import B24Hook, BatchByChunkV3\n"
        "from b24batch.testing import FakePortal\n"
        "with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:\n"
        "    rows = [('tasks.task.add', {'fields': {'title': f'task {n}'}}) for n in range(60)]\n"
        "    result = BatchByChunkV3(b24).make(rows)\n"
        "assert result.is_success and len(result.data) == 60, result\n"
    )
    assert "b24batch._engine.chunked" in loaded
    assert _lazy_in(loaded) == set()


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        pytest.param("OAuthApp", {"b24batch.apps", "b24batch._auth.tokens"}, id="OAuthApp"),
        pytest.param("InstalledPortal", {"b24batch.apps"}, id="InstalledPortal"),
        pytest.param("SQLiteStore", {"b24batch._limits.sqlite", "sqlite3"}, id="SQLiteStore"),
        pytest.param("RedisStore", {"b24batch._limits.redis"}, id="RedisStore"),
        pytest.param("LimitStore", {"b24batch._limits.shared"}, id="LimitStore"),
        pytest.param("DEFAULT_PREFIX", {"b24batch._limits.redis"}, id="DEFAULT_PREFIX"),
        pytest.param("FetchListV3", {"b24batch.lists"}, id="FetchListV3"),
        pytest.param("CallListV2", {"b24batch.lists"}, id="CallListV2"),
        pytest.param("CallV3", {"b24batch.calls"}, id="CallV3"),
    ],
)
def test_reading_a_lazy_name_loads_its_module(name: str, modules: set[str]) -> None:
    """``b24batch.NAME`` loads the module that defines it, and that module's own imports."""
    loaded = _loaded_by(f"import b24batch\nb24batch.{name}")
    assert modules <= loaded


def test_the_cli_starts_without_the_fake_portal_or_a_journal() -> None:
    """``b24batch --help`` loads neither the FakePortal's server nor the journal (sqlite3)."""
    loaded = _loaded_by(
        "import contextlib, io\n"
        "from b24batch.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
    )
    assert "b24batch.cli" in loaded
    assert _lazy_in(loaded) | {m for m in loaded if m.startswith("b24batch.testing")} == set()


def test_client_actions_load_the_faces_on_first_use() -> None:
    """``b24.actions`` builds every face, the lazily loaded ones too, on its first use."""
    loaded = _loaded_by(
        "from b24batch import B24Hook\n"
        "b24 = B24Hook.from_webhook_url('https://example.bitrix24.com/rest/1/abc/')\n"
        "assert type(b24.actions.v3.fetch_list).__name__ == 'FetchListV3'\n"
        "assert type(b24.actions.v2.call).__name__ == 'CallV2'\n"
        "b24.close()\n"
    )
    assert {"b24batch.actions", "b24batch.lists", "b24batch.calls"} <= loaded


def test_every_lazy_name_is_the_object_its_module_defines() -> None:
    """``b24batch.X`` and ``from b24batch import X`` give the very object the module defines."""
    lazy = b24batch._LAZY
    assert set(lazy) <= set(b24batch.__all__)
    assert {"OAuthApp", "InstalledPortal", "SQLiteStore", "RedisStore", "FetchListV3"} <= set(lazy)
    for name, module in lazy.items():
        defined = getattr(importlib.import_module(module), name)
        assert getattr(b24batch, name) is defined
        namespace: dict[str, object] = {}
        exec(f"from b24batch import {name}", namespace)  # the statement itself, not getattr
        assert namespace[name] is defined
