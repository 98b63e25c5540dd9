"""The command line (b24batch.cli)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from b24batch import B24Hook, BatchV3
from b24batch.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from b24batch.testing import FakePortal, Fault


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
    assert out.count("is_success=False") == 4
    assert "ENTITYNOTFOUNDEXCEPTION (HTTP 400): Record with ID = `999` not found" in out
    # The failing write batch, told honestly: the add before the failure ran.
    assert "maybe_executed=(0, 1)" in out
    assert "the portal now has 1 new task: the first add ran" in out
    # The classic batch reports each command on its own.
    assert "error: command 'missing': Not found" in out
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


def test_run_v2_sends_a_classic_batch(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --v2` sends the rows as a classic batch; a failed command exits 1 and is named."""
    calls = {
        "new": ["crm.deal.add", {"fields": {"TITLE": "From CLI"}}],
        "got": ["crm.deal.get", {"id": "$result[new]"}],
        "gone": ["crm.deal.get", {"id": 999}],
    }
    assert main(["run", "--fake", "--v2", "--no-halt", _write(tmp_path, calls)]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.err == "b24batch: error: command 'gone': Not found\n"
    assert '   got  {"ID": "1", "TITLE": "From CLI"' in captured.out


def test_run_v2_json_lists_errors_with_their_keys(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --v2 --json` keeps the per-command errors and what a halt skipped."""
    calls = [["crm.deal.get", {"id": 999}], ["user.current"]]
    assert main(["run", "--fake", "--v2", "--json", _write(tmp_path, calls)]) == EXIT_FAILED
    printed = json.loads(capsys.readouterr().out)
    assert [(error["key"], error["message"]) for error in printed["errors"]] == [(0, "Not found")]
    assert (printed["data"], printed["not_executed"]) == ([None, None], [1])


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
    """An unreachable portal exits 1 with one error line after the repeats' warnings, the
    secret masked in all of them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/rest/1/cliSecretValue9/"
    args = ["run", "--webhook", url, "--request-id", "r1", _write(tmp_path, [["a.get"]])]
    assert main(args) == EXIT_FAILED
    err = capsys.readouterr().err
    *warnings, error = err.splitlines()
    assert error.startswith("b24batch: TransportError: could not connect")
    assert [re.sub(r"in \d\.\d\d s", "in D s", line) for line in warnings] == [
        f"b24batch: WARNING: batch r1: attempt {n} of 3 in D s after TransportError" for n in (2, 3)
    ]
    assert "cliSecretValue9" not in err


def _stopped(process: subprocess.Popen[str], signum: int) -> int:
    """Send ``signum`` and wait a bounded time; a child that does not stop is killed."""
    process.send_signal(signum)
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"serve did not stop on signal {signum}: killed")


def _lines(process: subprocess.Popen[str], count: int) -> list[str]:
    """The child's first ``count`` stdout lines, read with a bound (a hung child fails)."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(stdout.readline()) for _ in range(count)], daemon=True
    )
    reader.start()
    return [lines.get(timeout=30) for _ in range(count)]


@pytest.mark.parametrize(
    ("launch", "signum"),
    [
        pytest.param([], signal.SIGINT, id="ctrl-c"),
        pytest.param([], signal.SIGTERM, id="sigterm"),
        # As background jobs, nohup and some CI launchers start it: SIGINT ignored.
        pytest.param(["sh", "-c", 'trap "" INT; exec "$0" "$@"'], signal.SIGTERM, id="no-sigint"),
    ],
)
def test_serve_prints_a_webhook_that_works(launch: list[str], signum: int) -> None:
    """`serve` runs a FakePortal in the foreground whose printed webhook answers; a signal
    stops it with exit code 0."""
    if signum == signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("this process ignores SIGINT, and so would serve: Ctrl+C cannot reach it")
    with subprocess.Popen(
        [*launch, sys.executable, "-m", "b24batch", "serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as process:
        try:
            lines = _lines(process, 2)
            webhook = lines[1].split()[-1]
            with B24Hook.from_webhook_url(webhook, timeout=(2.0, 10.0)) as b24:
                result = BatchV3(b24).make([("tasks.task.add", {"fields": {"title": "served"}})])
            assert result.data[0]["item"]["title"] == "served"
        finally:
            code = _stopped(process, signum)
    assert code == EXIT_OK


def _bounded_main(argv: list[str]) -> int | None:
    """``main(argv)`` in a thread joined with a timeout: an accepted ``serve`` would block."""
    outcome: list[int] = []
    worker = threading.Thread(target=lambda: outcome.append(main(argv)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), f"{argv} started serving instead of refusing"
    return outcome[0] if outcome else None


@pytest.mark.parametrize(
    ("rate", "fragment"),
    [
        pytest.param("fast", "not BURST/PER_SECOND", id="words"),
        pytest.param("nan/1", "finite", id="nan-burst"),
        pytest.param("1/nan", "finite", id="nan-rate"),
        pytest.param("inf/1", "finite", id="inf"),
        pytest.param("-1/2", "at least 1", id="negative"),
        pytest.param("0/1", "at least 1", id="zero-burst"),
        pytest.param("5/0", "above 0", id="zero-rate"),
    ],
)
def test_serve_refuses_a_bad_rate_limit_in_one_line(
    capsys: pytest.CaptureFixture[str], rate: str, fragment: str
) -> None:
    """A malformed or absurd --rate-limit exits 2 with one line naming it; nothing is served."""
    assert _bounded_main(["serve", f"--rate-limit={rate}"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.err.startswith(f"b24batch: --rate-limit {rate}: ")
    assert fragment in captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """--port outside 0-65535 exits 2 with one line, not a traceback."""
    assert _bounded_main(["serve", f"--port={port}"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"b24batch: --port {port}: pass a port from 0 to 65535 (0: any free one)\n"


HOSTILE = "boom\x1b]0;owned\x07\x1b[2J\nb24batch: all good\u202e\x9b31m"
HOSTILE_SHOWN = "boom\\x1b]0;owned\\x07\\x1b[2J\\nb24batch: all good\\u202e\\x9b31m"


def _assert_inert(text: str) -> None:
    """No control or format character, and no line but the CLI's own starts with b24batch:."""
    assert all(ch.isprintable() or ch == "\n" for ch in text), repr(text)


def test_a_hostile_raised_error_is_one_escaped_line(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """ANSI sequences and newlines in a portal's 500 are escaped: one line, nothing forged."""
    portal.inject(Fault.response(500, {"error": {"code": "E\x1b[31m", "message": HOSTILE}}))
    calls = [["tasks.task.add", {"fields": {"title": "x"}}]]  # a write: not repeated
    assert main(["run", "--webhook", portal.webhook_url, _write(tmp_path, calls)]) == EXIT_FAILED
    err = capsys.readouterr().err
    _assert_inert(err)
    assert err.count("\n") == 1
    assert err.startswith("b24batch: AjaxError: E\\x1b[31m (HTTP 500): ")
    assert HOSTILE_SHOWN in err


def test_a_hostile_returned_error_and_result_are_escaped(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A returned error and a result carrying controls print escaped, one line each."""

    def hostile(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError(HOSTILE, code="HOSTILE", status=400)

    portal.register("test.hostile", hostile)
    calls = [["test.hostile"]]
    assert main(["run", "--webhook", portal.webhook_url, _write(tmp_path, calls)]) == EXIT_FAILED
    captured = capsys.readouterr()
    _assert_inert(captured.out + captured.err)
    assert captured.err == f"b24batch: error: HOSTILE (HTTP 400): {HOSTILE_SHOWN}\n"
    assert not [line for line in captured.out.splitlines() if line.startswith("b24batch:")]


def test_lone_surrogates_in_results_print_escaped(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A result with a lone surrogate prints (escaped) instead of crashing the CLI."""
    portal.register("test.odd", lambda query: {"text": "a\ud800b", "bell": "\x07"})
    path = _write(tmp_path, [["test.odd"]])
    assert main(["run", "--webhook", portal.webhook_url, path]) == EXIT_OK
    out = capsys.readouterr().out
    _assert_inert(out)
    assert '{"text": "a\\ud800b", "bell": "\\u0007"}' in out


def test_json_output_escapes_but_keeps_every_value(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints valid, printable JSON that reads back as exactly what the portal sent."""
    sent = {
        "text": "a\ud800b",
        "c1": "\x9b2J",
        "rtl": "\u202e",
        "tag": "\U000e0001",
        "ok": "Задача",
    }
    portal.register("test.odd", lambda query: sent)
    path = _write(tmp_path, [["test.odd"]])
    assert main(["run", "--json", "--webhook", portal.webhook_url, path]) == EXIT_OK
    out = capsys.readouterr().out
    _assert_inert(out)
    assert "Задача" in out  # printable text is not escaped
    assert json.loads(out)["data"] == [sent]


def test_retry_warnings_are_formatted_single_lines_on_stderr(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retried batch logs one 'b24batch: WARNING: ...' line, the portal's code escaped."""
    body = {"error": {"code": "E\x1b[2J\nb24batch: forged", "message": "m"}}
    portal.inject(Fault.response(500, body, headers={"Retry-After": "0"}))
    path = _write(tmp_path, [["tasks.task.get", {"id": 1}]])  # read-only: repeated
    args = ["run", "--webhook", portal.webhook_url, "--request-id", "r1", path]
    assert main(args) == EXIT_FAILED  # task 1 does not exist: the repeat's 400 is returned
    err = capsys.readouterr().err
    assert err == (
        "b24batch: WARNING: batch r1: attempt 2 of 3 in 0.00 s after E\\x1b[2J\\nb24batch: forged\n"
        "b24batch: error: BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION (HTTP 400): "
        "Record with ID = `1` not found\n"
    )
    assert len(portal.requests) == 2


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    """`b24batch demo | head -1` ends without a traceback."""
    process = subprocess.run(
        f"{sys.executable} -m b24batch demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
        timeout=60,
    )
    assert process.stdout.startswith("FakePortal at http://127.0.0.1:")
    assert "Traceback" not in process.stderr
    assert "BrokenPipeError" not in process.stderr


def _first_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(1, "1 result", id="one"),
        pytest.param(3, "3 results", id="three"),
        pytest.param(51, "51 results in 2 chunks", id="chunked"),
    ],
)
def test_run_summaries_count_in_words(
    portal: FakePortal,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    rows: int,
    expected: str,
) -> None:
    """The summary line says '1 result', '3 results', '51 results in 2 chunks'."""
    calls = [["tasks.task.add", {"fields": {"title": f"T{n}"}}] for n in range(rows)]
    assert main(["run", "--webhook", portal.webhook_url, _write(tmp_path, calls)]) == EXIT_OK
    assert _first_line(capsys) == expected


def test_run_chunks_more_than_50_rows(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """120 rows go as 3 batches of at most 50, chunk k with request id ID.k, results merged."""
    calls = [["tasks.task.add", {"fields": {"title": f"T{n}"}}] for n in range(120)]
    args = ["run", "--webhook", portal.webhook_url, "--request-id", "cli", _write(tmp_path, calls)]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "120 results in 3 chunks"
    assert '   119  {"item": {"id": 120' in out
    assert [len(request.body) for request in portal.requests] == [50, 50, 20]
    assert [r.query["bx24_request_id"] for r in portal.requests] == ["cli.0", "cli.1", "cli.2"]


def test_run_a_halted_chunked_run_says_what_was_not_executed(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing first chunk that writes stops the run: '1 chunk', the rest 'not executed',
    exit 1. (Reads would all be on the wire together, and land.)"""
    calls = [["tasks.task.update", {"id": 999, "fields": {"title": "x"}}]]
    calls += [["tasks.task.list", {}]] * 59
    assert main(["run", "--webhook", portal.webhook_url, _write(tmp_path, calls)]) == EXIT_FAILED
    assert _first_line(capsys) == "failed: 1 error, 0 results in 1 chunk, 10 not executed"


def test_run_sends_the_idempotency_key_per_chunk(portal: FakePortal, tmp_path: Any) -> None:
    """--idempotency-key is sent as Idempotency-Key, suffixed .k for chunk k past 50 rows."""
    small = _write(tmp_path, [["tasks.task.list", {}]])
    assert main(["run", "--webhook", portal.webhook_url, "--idempotency-key", "k1", small]) == 0
    big = tmp_path / "big.json"
    big.write_text(json.dumps([["tasks.task.list", {}]] * 60))
    assert main(["run", "--webhook", portal.webhook_url, "--idempotency-key", "k2", str(big)]) == 0
    keys = [request.headers.get("Idempotency-Key") for request in portal.requests]
    assert keys[0] == "k1"
    assert sorted(keys[1:]) == ["k2.0", "k2.1"]  # read-only chunks go out together


def test_run_isolate_errors_names_the_failing_command(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--isolate-errors finds the missing task among three reads and keeps the other two."""
    first, second = portal.add_task(title="A"), portal.add_task(title="B")
    calls = [["tasks.task.get", {"id": i, "select": ["title"]}] for i in (first, 999, second)]
    path = _write(tmp_path, calls)
    assert main(["run", "--webhook", portal.webhook_url, "--isolate-errors", path]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "failed: 1 error, 2 results"
    assert "error: command 1: BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION" in captured.err
    assert '     2  {"item": {"title": "B"}}' in captured.out


class _Terminal:
    """A stand-in for a terminal's stderr: records what is written, says it is a tty."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_run_shows_progress_on_a_terminal(
    portal: FakePortal, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 50 rows, a terminal's stderr gets one progress line, rewritten after each chunk."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    path = _write(tmp_path, [["tasks.task.list", {}]] * 120)
    assert main(["run", "--webhook", portal.webhook_url, path]) == EXIT_OK
    assert terminal.text == (
        "\rb24batch: 50 of 120 commands\rb24batch: 100 of 120 commands"
        "\rb24batch: 120 of 120 commands\n"
    )


def test_run_shows_no_progress_when_stderr_is_not_a_terminal(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redirected stderr (a log file, a pipe) stays empty on success."""
    path = _write(tmp_path, [["tasks.task.list", {}]] * 120)
    assert main(["run", "--webhook", portal.webhook_url, path]) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_run_a_raised_error_mid_run_keeps_what_was_fetched(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chunk raising prints the chunks before it, then the error as one line; exit 1."""
    calls = [["tasks.task.add", {"fields": {"title": f"T{n}"}}] for n in range(60)]

    def fail_second_chunk(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError("boom", code="INTERNAL_SERVER_ERROR", status=500)

    portal.register("test.fail", fail_second_chunk)
    calls[55] = ["test.fail", {}]
    path = _write(tmp_path, calls)
    assert main(["run", "--webhook", portal.webhook_url, path]) == EXIT_FAILED
    captured = capsys.readouterr()
    summary = "failed: 1 error, 50 results in 1 chunk fetched before the error"
    assert captured.out.splitlines()[0] == summary
    assert '    49  {"item": {"id": 50, ' in captured.out
    (error,) = captured.err.splitlines()
    assert error.startswith("b24batch: AjaxError: INTERNAL_SERVER_ERROR (HTTP 500)")


def test_run_json_for_a_chunked_run(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json past 50 rows prints the ChunkedResult: chunks, merged data, errors with kinds."""
    calls = [["tasks.task.list", {}]] * 50 + [["tasks.task.get", {"id": 999}]]
    path = _write(tmp_path, calls)
    args = ["run", "--json", "--no-halt", "--request-id", "j", "--webhook", portal.webhook_url]
    assert main([*args, path]) == EXIT_FAILED
    printed = json.loads(capsys.readouterr().out)
    assert [chunk["request_id"] for chunk in printed["chunks"]] == ["j.0", "j.1"]
    assert len(printed["data"]) == 50
    [error] = printed["errors"]
    assert (error["chunk"], error["keys"], error["kind"]) == (1, [50], "not_found")


def test_serve_seed_starts_with_sample_tasks_and_deals() -> None:
    """`serve --seed` prints its seeded ids; the tasks answer REST 3.0, the deals classic."""
    import requests

    with subprocess.Popen(
        [sys.executable, "-m", "b24batch", "serve", "--seed"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            webhook = lines[1].split()[-1]
            assert lines[2] == "seeded:         tasks [1, 2, 3], deals [1, 2]\n"
            with B24Hook.from_webhook_url(webhook) as b24:
                result = BatchV3(b24).make([("tasks.task.list", {"select": ["id", "title"]})])
            titles = [item["title"] for item in result.data[0]["items"]]
            assert titles == ["Write the spec", "Review it", "Ship"]
            answer = requests.post(
                f"{webhook}batch", data={"cmd[d]": "crm.deal.get?id=2"}, timeout=5
            ).json()
            assert answer["result"]["result"]["d"]["TITLE"] == "Support contract"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == EXIT_OK


def test_run_journal_resumes_and_journal_shows_the_job(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --journal FILE` twice sends the job once; `journal FILE` shows it complete."""
    rows = [["tasks.task.add", {"fields": {"title": f"T{n}"}}] for n in range(60)]
    journal = str(tmp_path / "job.journal")
    with FakePortal() as portal:
        monkeypatch.setenv("B24_WEBHOOK_URL", portal.webhook_url)
        path = _write(tmp_path, rows)
        assert main(["run", "--journal", journal, path]) == EXIT_OK
        sent = len(portal.requests)
        assert main(["run", "--journal", journal, "--json", path]) == EXIT_OK
        assert len(portal.requests) == sent == 2
        assert len(portal.tasks) == 60
    capsys.readouterr()
    assert main(["journal", journal]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "done:      2 chunks (60 commands)" in shown
    assert "not sent:  0 chunks (0 commands)" in shown
    assert "complete" in shown
    assert portal.secret not in shown


def test_journal_of_a_missing_file_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`journal FILE` for no such file: one line, exit 2, and no file is created."""
    path = tmp_path / "none.journal"
    assert main(["journal", str(path)]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert not path.exists()


def test_resend_in_doubt_needs_a_journal(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--resend-in-doubt` alone is bad input: it resumes a job, which needs its journal."""
    path = _write(tmp_path, [["tasks.task.list"]])
    assert main(["run", "--fake", "--resend-in-doubt", path]) == EXIT_BAD_INPUT
    assert "pass --journal FILE" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints `b24batch VERSION` on stdout and exits 0."""
    from b24batch import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == EXIT_OK
    assert capsys.readouterr().out == f"b24batch {__version__}\n"


def test_run_fake_seed_answers_the_sample_tasks_and_deals(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --fake --seed` starts the fake with serve's sample tasks, so task 2 exists."""
    path = _write(tmp_path, [["tasks.task.get", {"id": 2, "select": ["title"]}]])
    assert main(["run", "--fake", "--seed", path]) == EXIT_OK
    assert '0  {"item": {"title": "Review it"}}' in capsys.readouterr().out
    deals = _write(tmp_path, [["crm.deal.get", {"id": 1}]])
    assert main(["run", "--fake", "--seed", "--v2", deals]) == EXIT_OK
    assert '"TITLE": "Website redesign"' in capsys.readouterr().out


def test_run_seed_without_fake_is_bad_input(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--seed` with a real portal exits 2 and sends nothing: it would write to the portal."""
    path = _write(tmp_path, [["tasks.task.list"]])
    assert main(["run", "--webhook", portal.webhook_url, "--seed", path]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "b24batch: --seed: only with --fake\n"
    assert portal.requests == []


def test_serve_secret_fixes_the_webhook_url() -> None:
    """`serve --secret S` prints a webhook URL with S, which answers with S and no other."""
    with subprocess.Popen(
        [sys.executable, "-m", "b24batch", "serve", "--secret", "fixed_Secret-1"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as process:
        try:
            webhook = _lines(process, 2)[1].split()[-1]
            assert webhook.endswith("/rest/1/fixed_Secret-1/")
            with B24Hook.from_webhook_url(webhook, timeout=(2.0, 10.0)) as b24:
                result = BatchV3(b24).make([("tasks.task.list", {})])
            assert result.is_success
        finally:
            code = _stopped(process, signal.SIGTERM)
    assert code == EXIT_OK


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("has/slash", id="slash"),
        pytest.param("new\nline", id="newline"),
        pytest.param("spa ce", id="space"),
        pytest.param("", id="empty"),
        pytest.param("\x1b[2Jx", id="ansi"),
    ],
)
def test_serve_refuses_a_bad_secret_without_echoing_it(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    """A --secret outside letters, digits, '_' and '-' exits 2 with one line that omits it."""
    assert _bounded_main(["serve", "--secret", secret]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.err == (
        "b24batch: --secret: pass a non-empty string of letters, digits, '_' or '-'\n"
    )
    assert captured.out == ""


def test_run_v2_halted_text_lists_the_commands_not_run(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A halted classic batch's text output names the commands it never ran."""
    calls = {
        "gone": ["crm.deal.get", {"id": 999}],
        "later": ["user.current"],
        "last": ["crm.deal.list"],
    }
    assert main(["run", "--fake", "--v2", _write(tmp_path, calls)]) == EXIT_FAILED
    assert "   not_executed=('later', 'last')\n" in capsys.readouterr().out


def test_run_text_puts_errors_on_stderr_and_results_on_stdout(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A returned error prints on stderr; the summary and results stay on stdout."""
    first = portal.add_task(title="A")
    calls = [["tasks.task.get", {"id": i, "select": ["title"]}] for i in (first, 999)]
    args = ["run", "--webhook", portal.webhook_url, "--isolate-errors", _write(tmp_path, calls)]
    assert main(args) == EXIT_FAILED
    captured = capsys.readouterr()
    assert "error:" not in captured.out
    assert '     0  {"item": {"title": "A"}}' in captured.out
    (error,) = captured.err.splitlines()
    assert error.startswith("b24batch: error: command 1: BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUND")


def test_run_a_long_not_executed_list_is_cut_after_ten(
    portal: FakePortal, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A halt before 20 unsent commands lists the first ten of them and counts the rest (the
    failing chunk writes, so nothing goes with it)."""
    calls = [["tasks.task.update", {"id": 999, "fields": {"title": "x"}}]]
    calls += [["tasks.task.list", {}]] * 69
    assert main(["run", "--webhook", portal.webhook_url, _write(tmp_path, calls)]) == EXIT_FAILED
    shown = ", ".join(map(str, range(50, 60)))
    assert f"   not_executed=({shown}, ... and 10 more)\n" in capsys.readouterr().out
