"""The command line (b24batch.cli)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import pytest

from b24batch import B24Hook, BatchV3
from b24batch.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from b24batch.testing import FakePortal


def test_demo_runs_every_call_form_against_the_fake_portal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`demo` prints results for each call form, a typed result and the failing batch."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "/rest/api/1/***/" in out
    assert '{"item": {"id": 1, "title": "Write the spec"}}' in out
    assert '{"item": {"id": 4, "title": "From a batch"}}' in out  # the $ref resolved
    assert 'first  {"item": {"title": "Write the spec"}}' in out
    assert "DemoTaskItem(item=DemoTask(id=2, title='Review it', responsible_id=2))" in out
    assert out.count("is_success=True") == 4
    assert out.count("is_success=False") == 3
    assert "ENTITYNOTFOUNDEXCEPTION (HTTP 400): Record with ID = `999` not found" in out
    # The failing write batch, told honestly: the add before the failure ran.
    assert "maybe_executed=(0, 1)" in out
    assert "the portal now has 1 new task: the first add ran" in out
    # isolate_errors names the failing command and keeps the others' results.
    assert "error: command 1: BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION" in out
    assert '     2  {"item": {"title": "Review it"}}' in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the CLI exits 2 with usage."""
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


def _write(tmp_path: Any, data: Any) -> str:
    path = tmp_path / "calls.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_run_fake_prints_results_and_exits_0(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --fake` runs the file's rows in order, $ref included, and exits 0."""
    calls = [
        ["tasks.task.add", {"fields": {"title": "From CLI"}}],
        {"method": "tasks.task.get", "params": {"id": {"$ref": "0.item.id"}, "select": ["title"]}},
    ]
    assert main(["run", "--fake", _write(tmp_path, calls)]) == EXIT_OK
    out = capsys.readouterr().out
    assert '1  {"item": {"title": "From CLI"}}' in out


def test_run_json_prints_the_whole_result(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json` prints the BatchResult as JSON, keyed by the file's names."""
    calls = {"made": {"method": "tasks.task.add", "params": {"fields": {"title": "J"}}}}
    code = main(["run", "--fake", "--json", "--request-id", "cli-1", _write(tmp_path, calls)])
    assert code == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed["is_success"] is True
    assert printed["request_id"] == "cli-1"
    assert printed["data"]["made"]["item"]["title"] == "J"
    assert printed["errors"] == []
    assert printed["time"]["duration"] is not None


def test_run_failed_batch_exits_1_with_errors_in_json(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch the portal refuses exits 1 and reports the error."""
    path = _write(tmp_path, [["tasks.task.get", {"id": 404}]])
    assert main(["run", "--fake", "--json", path]) == EXIT_FAILED
    printed = json.loads(capsys.readouterr().out)
    assert printed["is_success"] is False
    assert printed["errors"][0]["code"] == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    assert printed["data"] == []


def test_run_no_halt_sends_parallel(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--no-halt` sends parallel=true; the webhook comes from $B24_WEBHOOK_URL."""
    with FakePortal() as portal:
        monkeypatch.setenv("B24_WEBHOOK_URL", portal.webhook_url)
        assert main(["run", "--no-halt", _write(tmp_path, [["tasks.task.list"]])]) == EXIT_OK
        assert portal.requests[-1].body[0]["parallel"] is True


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        pytest.param("not json", ["--fake"], "cannot read", id="bad-json"),
        pytest.param("[]", ["--fake"], "calls is empty", id="empty"),
        pytest.param('[["a.get", {}, 3]]', ["--fake"], "calls[0] has 3 items", id="bad-row"),
        pytest.param('[["a.get"]]', [], "no portal", id="no-webhook"),
        pytest.param(
            '[["a.get"]]',
            ["--webhook", "https://x.bitrix24.com/rest/1/"],
            "not a webhook URL",
            id="bad-webhook",
        ),
    ],
)
def test_run_bad_input_exits_2_with_one_line(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    args: list[str],
    fragment: str,
) -> None:
    """Bad input exits 2 with a one-line message on stderr, no traceback."""
    monkeypatch.delenv("B24_WEBHOOK_URL", raising=False)
    path = tmp_path / "calls.json"
    path.write_text(content)
    assert main(["run", *args, str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_run_transport_failure_exits_1_without_the_secret(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreachable portal exits 1, one line, secret masked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/rest/1/cliSecretValue9/"
    assert main(["run", "--webhook", url, _write(tmp_path, [["a.get"]])]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "TransportError: could not connect" in err
    assert "cliSecretValue9" not in err
    assert err.count("\n") == 1


def test_serve_prints_a_webhook_that_works() -> None:
    """`serve` runs a FakePortal in the foreground whose printed webhook URL answers batches."""
    with subprocess.Popen(
        [sys.executable, "-m", "b24batch", "serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(2)]
            webhook = lines[1].split()[-1]
            with B24Hook.from_webhook_url(webhook) as b24:
                result = BatchV3(b24).make([("tasks.task.add", {"fields": {"title": "served"}})])
            assert result.data[0]["item"]["title"] == "served"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == EXIT_OK


def test_serve_rate_limit_must_be_burst_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --rate-limit is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(["serve", "--rate-limit", "fast"])
    assert info.value.code == EXIT_BAD_INPUT
    assert "BURST/PER_SECOND" in capsys.readouterr().err


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    """`b24batch demo | head -1` ends without a traceback."""
    process = subprocess.run(
        f"{sys.executable} -m b24batch demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert process.stdout.startswith("FakePortal at http://127.0.0.1:")
    assert "Traceback" not in process.stderr
    assert "BrokenPipeError" not in process.stderr
