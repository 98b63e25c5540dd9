"""The command line: ``python -m b24batch demo | run FILE | serve | journal FILE``.

``demo`` runs example batches on the built-in FakePortal, ``run`` sends a JSON file's commands to
a portal (in chunks of 50 when there are more; ``--journal`` makes it a job that resumes),
``serve`` keeps a FakePortal running, ``journal`` shows where a job stands. Exit status
0, 1 (a failed batch) or 2 (bad input). Prints one inert line per result or error
(``cli_output.py``), never a traceback or a secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TextIO

import attrs

from b24batch import (
    B24Error,
    B24Hook,
    BatchByChunkV2,
    BatchByChunkV3,
    BatchResult,
    BatchV2,
    BatchV3,
    ChunkedResult,
    Command,
    SdkError,
)
from b24batch._version import __version__
from b24batch.cli_output import (
    CleanFormatter,
    clean,
    error_lines,
    json_text,
    plural,
    render,
    result_json,
    summary,
)
from b24batch.commands import MAX_COMMANDS
from b24batch.redaction import redact

if TYPE_CHECKING:
    from b24batch.testing import FakePortal

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl+C
WEBHOOK_ENV = "B24_WEBHOOK_URL"
_MAX_PORT = 65535
_LOGGERS = ("b24batch", "urllib3")
SEED_TASKS = (
    ("Write the spec", 1, "pending"),
    ("Review it", 2, "pending"),
    ("Ship", 1, "completed"),
)
"""``serve --seed``'s tasks: (title, responsibleId, status); they get ids 1, 2, 3."""
SEED_DEALS = (("Website redesign", "45000"), ("Support contract", "12000"))
"""``serve --seed``'s deals, on the classic route: (TITLE, OPPORTUNITY); ids 1 and 2."""


@attrs.frozen
class DemoTask:
    """A task as the demo types it: snake_case fields read from camelCase wire keys."""

    id: int
    title: str
    responsible_id: int | None = attrs.field(default=None, alias="responsibleId")


@attrs.frozen
class DemoTaskItem:
    """The answer of ``tasks.task.get``: ``{"item": {...}}``."""

    item: DemoTask


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors are bad input: exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    For example, with the commands in ``calls.json``, sent to a FakePortal:

    ```python
    exit_status = main(["run", "--fake", "calls.json"])
    ```
    """
    parser = _Parser(prog="b24batch", description="Bitrix24 REST 3.0 batch from the command line.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="run example batches against the built-in FakePortal")

    run = commands.add_parser(
        "run",
        help="run the commands in a JSON file as one batch",
        description="FILE holds a list of [method, params] or {method, params, as} rows, or an "
        "object of named rows; '-' reads standard input.",
    )
    run.add_argument("file", metavar="FILE")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--webhook", metavar="URL", help=f"webhook URL (default: ${WEBHOOK_ENV})")
    target.add_argument("--fake", action="store_true", help="use the built-in FakePortal")
    run.add_argument(
        "--seed", action="store_true", help="with --fake: start it with serve --seed's samples"
    )
    run.add_argument("--v2", action="store_true", help="send a classic batch (CRM, users, ...)")
    run.add_argument(
        "--no-halt",
        action="store_true",
        help="run every command (parallel=true, or halt=0); past 50 rows, every chunk too",
    )
    run.add_argument("--request-id", metavar="ID", help="bx24_request_id to send (chunk k: ID.k)")
    run.add_argument(
        "--idempotency-key", metavar="KEY", help="Idempotency-Key to send (chunk k: KEY.k)"
    )
    run.add_argument(
        "--isolate-errors",
        action="store_true",
        help="when a read-only batch fails, find which commands failed and keep the others",
    )
    run.add_argument(
        "--journal",
        metavar="FILE",
        help="keep each chunk's outcome in FILE; run again to continue where the job stopped",
    )
    run.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="with --journal: send again the chunks an earlier run left without an answer",
    )
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")

    journal = commands.add_parser(
        "journal", help="show where a job with a journal stands: chunks done, failed, in doubt"
    )
    journal.add_argument("file", metavar="FILE")

    serve = commands.add_parser("serve", help="run a FakePortal in the foreground")
    serve.add_argument("--port", type=int, default=0, help="port to bind (default: any free one)")
    serve.add_argument("--rate-limit", metavar="B/S", help="leaky bucket: burst B, S per second")
    serve.add_argument(
        "--seed", action="store_true", help="start with sample tasks (ids 1-3) and deals (1-2)"
    )
    serve.add_argument(
        "--secret",
        help="the webhook secret, so the URL stays the same across restarts (default: random)",
    )

    args = parser.parse_args(argv)
    try:
        with _warnings_to_stderr():
            if args.command == "demo":
                return _demo()
            if args.command == "run":
                return _run(args)
            if args.command == "journal":
                return _journal(args.file)
            return _serve(args.port, args.rate_limit, seed=args.seed, secret=args.secret)
    except BrokenPipeError:
        # The reader went away (``b24batch demo | head``): stop quietly, as Unix tools do, and
        # keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.seed and not args.fake:  # seeding writes: never to a real portal
        return _fail(EXIT_BAD_INPUT, "--seed: only with --fake")
    try:
        calls = _read_calls(args.file)
    except (OSError, ValueError) as exc:
        return _fail(EXIT_BAD_INPUT, f"cannot read {args.file}: {exc}")
    result: BatchResult[Any] | ChunkedResult[Any]
    try:
        with _client(args) as b24:
            result = _send(b24, calls, args)
    except SdkError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    except B24Error as exc:
        if exc.partial is not None and exc.partial.chunks:  # never drop what was fetched
            _print_result(exc.partial, args, "fetched before the error", raised=exc)
        return _fail(EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt as exc:
        return _interrupted(getattr(exc, "partial", None), args)
    _print_result(result, args)
    return EXIT_OK if result.is_success else EXIT_FAILED


def _send(b24: B24Hook, calls: Any, args: argparse.Namespace) -> Any:
    """One batch for up to 50 rows; more go through a chunker, 50 at a time."""
    halt, request_id, key = not args.no_halt, args.request_id, args.idempotency_key
    journal = args.journal
    if args.resend_in_doubt and journal is None:
        raise SdkError("--resend-in-doubt: pass --journal FILE, the job to resume")
    in_doubt: Literal["report", "resend"] = "resend" if args.resend_in_doubt else "report"
    many = journal is not None or (isinstance(calls, (list, dict)) and len(calls) > MAX_COMMANDS)
    if args.v2:
        if key is not None:
            raise SdkError("--idempotency-key: the classic batch (--v2) has none")
        if args.isolate_errors:
            raise SdkError("--isolate-errors: a classic batch (--v2) names every failed command")
        if not many:
            return BatchV2(b24).make(calls, halt_on_error=halt, request_id=request_id)
        with _Progress(sys.stderr) as progress:
            return BatchByChunkV2(b24).make(
                calls,
                halt_on_error=halt,
                request_id=request_id,
                progress=progress if sys.stderr.isatty() else None,
                journal=journal,
                in_doubt=in_doubt,
            )
    if not many:
        return BatchV3(b24).make(
            calls,
            halt_on_error=halt,
            request_id=request_id,
            idempotency_key=key,
            isolate_errors=args.isolate_errors,
        )
    with _Progress(sys.stderr) as progress:
        return BatchByChunkV3(b24).make(
            calls,
            halt_on_error=halt,
            request_id=request_id,
            idempotency_key=key,
            isolate_errors=args.isolate_errors,
            progress=progress if sys.stderr.isatty() else None,
            journal=journal,
            in_doubt=in_doubt,
        )


def _journal(path: str) -> int:
    """``journal FILE``: where the job stands, in one screen."""
    try:
        # Imported here, not at the top: only this command reads a journal, and the journal
        # module brings sqlite3; ``run`` opens one through the faces when it is asked to.
        from b24batch._engine.journal import summary

        state = summary(path)
    except SdkError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    job = state["job"]
    chunks, commands = state["chunks"], state["commands"]
    print(f"journal {clean(path)} (schema {state['schema']})")
    if job is None:
        print("no job started")
        return EXIT_OK
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created"]))
    total = job["chunks"] if job["chunks"] is not None else sum(chunks.values())
    print(
        f"job:       {job['protocol']} on {clean(job['portal'])}, chunk_size {job['chunk_size']}, "
        f"{total} chunks, started {started}, request id {clean(job['request_id'])}"
    )
    print(
        f"done:      {chunks['answered']} chunks ({commands['answered']} commands), "
        f"{state['answered_with_errors']} of them answered with errors"
    )
    print(f"failed:    {chunks['failed']} chunks{_listed(state['failed'])}")
    print(f"in doubt:  {chunks['sending']} chunks{_listed(state['in_doubt'])}")
    print(f"not sent:  {chunks['planned']} chunks ({commands['planned']} commands)")
    if chunks["planned"] == chunks["failed"] == chunks["sending"] == 0:
        print("complete: running the job again returns its result and sends nothing")
    elif chunks["sending"]:
        print(
            "in doubt: sent without a recorded answer; they may have run. A run again leaves "
            "them unsent (unless repeating them is safe); check the portal, then "
            "--resend-in-doubt"
        )
    return EXIT_OK


def _listed(indexes: list[int], shown: int = 10) -> str:
    if not indexes:
        return ""
    more = f" and {len(indexes) - shown} more" if len(indexes) > shown else ""
    return ": " + ", ".join(map(str, indexes[:shown])) + more


def _print_result(
    result: BatchResult[Any] | ChunkedResult[Any],
    args: argparse.Namespace,
    note: str = "",
    *,
    raised: B24Error | None = None,
) -> None:
    if args.json:
        print(json_text(result_json(result)))
        return
    # Results are the data, on stdout; the errors beside them go to stderr, like every error.
    print(render(f"{summary(result)} {note}".rstrip(), result, errors=False), end="", flush=True)
    for line in error_lines(result, besides=raised):
        print(f"b24batch: {line}", file=sys.stderr)


class _Progress:
    """``b24batch: 100 of 3000 commands`` on one terminal line, rewritten after every chunk."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown = False

    def __call__(self, done: int, total: int | None) -> None:
        self._stream.write(f"\rb24batch: {done} of {total} commands")
        self._stream.flush()
        self._shown = True

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._shown:
            self._stream.write("\n")


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[B24Hook]:
    if args.fake:
        with _fake_portal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
            if args.seed:
                _seed(portal)
            yield b24
        return
    url = args.webhook or os.environ.get(WEBHOOK_ENV)
    if not url:
        raise SdkError(f"no portal: pass --webhook URL, set ${WEBHOOK_ENV}, or use --fake")
    with B24Hook.from_webhook_url(url) as b24:
        yield b24


def _read_calls(path: str) -> Any:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _seed(portal: FakePortal) -> tuple[list[int], list[int]]:
    """``--seed``: the sample tasks and deals, with the ids they got."""
    tasks = [
        portal.add_task(title=title, responsibleId=responsible, status=status)
        for title, responsible, status in SEED_TASKS
    ]
    deals = [portal.add_deal(TITLE=title, OPPORTUNITY=amount) for title, amount in SEED_DEALS]
    return tasks, deals


def _serve(
    port: int, rate_text: str | None, *, seed: bool = False, secret: str | None = None
) -> int:
    if not 0 <= port <= _MAX_PORT:
        return _fail(
            EXIT_BAD_INPUT, f"--port {port}: pass a port from 0 to {_MAX_PORT} (0: any free one)"
        )
    try:
        rate_limit = None if rate_text is None else _rate(rate_text)
    except ValueError as exc:
        return _fail(EXIT_BAD_INPUT, f"--rate-limit {rate_text}: {exc}")
    try:
        portal = _fake_portal(port=port, rate_limit=rate_limit, secret=secret)
    except ValueError:  # the FakePortal's rule; the message never repeats the secret
        return _fail(
            EXIT_BAD_INPUT, "--secret: pass a non-empty string of letters, digits, '_' or '-'"
        )
    try:
        portal.start()
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return _fail(EXIT_BAD_INPUT, f"cannot listen on port {port}: {reason}")
    print(f"FakePortal serving on {portal.base_url}", flush=True)
    print(f"webhook URL:    {portal.webhook_url}", flush=True)
    if seed:
        tasks, deals = _seed(portal)
        print(f"seeded:         tasks {tasks}, deals {deals}", flush=True)
    print(f"OAuth endpoint: {portal.oauth_endpoint}  token: {portal.access_token}", flush=True)
    print("Press Ctrl+C to stop.", flush=True)
    previous = _stop_on_sigterm()
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        portal.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


class _Terminated(Exception):
    """SIGTERM arrived while serving."""


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop ``serve`` cleanly (also when SIGINT was inherited as ignored, as by
    background jobs and ``nohup``); the previous handler, or None off the main thread."""

    def stop(signum: int, frame: object) -> None:
        raise _Terminated

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, stop)


def _rate(text: str) -> tuple[float, float]:
    """``BURST/PER_SECOND`` as numbers, or ValueError saying what is wrong."""
    try:
        burst, per_second = (float(part) for part in text.split("/"))
    except ValueError:
        raise ValueError("this is not BURST/PER_SECOND, e.g. 50/2") from None
    if not (math.isfinite(burst) and math.isfinite(per_second)):
        raise ValueError("burst and per-second rate must be finite numbers, e.g. 50/2")
    if burst < 1 or per_second <= 0:
        raise ValueError("pass a burst of at least 1 and a per-second rate above 0, e.g. 50/2")
    return burst, per_second


def _interrupted(partial: ChunkedResult[Any] | None, args: argparse.Namespace) -> int:
    """Ctrl+C: what landed first, then one line on what may have run and what was not sent."""
    if partial is None:
        return _fail(EXIT_INTERRUPTED, "interrupted (Ctrl+C); the batch may have run")
    if partial.chunks:  # never drop what was fetched
        _print_result(partial, args, "fetched before Ctrl+C")
    doubt, unsent = len(partial.maybe_executed), len(partial.not_executed)
    return _fail(
        EXIT_INTERRUPTED,
        f"interrupted (Ctrl+C): {plural(doubt, 'command')} may have run, "
        f"{plural(unsent, 'command')} not sent",
    )


def _fail(status: int, message: str) -> int:
    print(f"b24batch: {clean(redact(message))}", file=sys.stderr)
    return status


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Send the library's WARNING lines (retries, say) to stderr as ``b24batch: warning: ...``
    for the length of one command, instead of through Python's last-resort handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(CleanFormatter("b24batch: %(levelname)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _fake_portal(**options: Any) -> FakePortal:
    """A FakePortal for ``demo``, ``serve`` and ``run --fake``.

    ``b24batch.testing`` (an HTTP server and its stores) is imported here, not at the top: a
    ``run`` against a real portal, and every other command, starts without it.
    """
    from b24batch.testing import FakePortal

    return FakePortal(**options)


def _demo() -> int:
    with _fake_portal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ids = [
            portal.add_task(title=title, responsibleId=responsible)
            for title, responsible in (("Write the spec", 1), ("Review it", 2), ("Ship", 1))
        ]
        batch = BatchV3(b24)
        print(f"FakePortal at {b24.url} with tasks {ids}\n")

        _show(
            "1. A list of (method, params) tuples: results in call order",
            batch.make([("tasks.task.get", {"id": i, "select": ["id", "title"]}) for i in ids]),
        )
        _show(
            "2. Dict rows with 'as', and a $ref to an earlier command's output",
            batch.make(
                [
                    {
                        "method": "tasks.task.add",
                        "params": {"fields": {"title": "From a batch"}},
                        "as": "created",
                    },
                    {
                        "method": "tasks.task.get",
                        "params": {"id": {"$ref": "created.item.id"}, "select": ["id", "title"]},
                    },
                ]
            ),
        )
        _show(
            "3. Named commands: results keyed by your names",
            batch.make(
                {
                    "first": ("tasks.task.get", {"id": ids[0], "select": ["title"]}),
                    "open": (
                        "tasks.task.list",
                        {"select": ["id"], "filter": [["responsibleId", "=", 1]]},
                    ),
                }
            ),
        )
        typed = batch.make(
            [Command("tasks.task.get", {"id": i}) for i in ids[:2]], result_type=DemoTaskItem
        )
        _show("4. Typed results: result_type=DemoTaskItem (attrs, camelCase mapped)", typed)
        _show(
            "5. A failing batch is returned, not raised: check is_success",
            batch.make([("tasks.task.get", {"id": ids[0]}), ("tasks.task.get", {"id": 999})]),
        )
        before = len(portal.tasks)
        _show(
            "6. A failing write batch: the portal stops at the failing command, without rollback",
            batch.make(
                [
                    ("tasks.task.add", {"fields": {"title": "Added before the failure"}}),
                    ("tasks.task.update", {"id": 999, "fields": {"title": "No such task"}}),
                    ("tasks.task.add", {"fields": {"title": "Never runs"}}),
                ]
            ),
        )
        print(f"   the portal now has {len(portal.tasks) - before} new task: the first add ran\n")
        _show(
            "7. isolate_errors=True finds which command of a read-only batch failed",
            batch.make(
                [("tasks.task.get", {"id": i, "select": ["title"]}) for i in (ids[0], 999, ids[1])],
                isolate_errors=True,
            ),
        )
        deal = portal.add_deal(TITLE="Acme renewal", OPPORTUNITY="1200.00")
        _show(
            "8. A classic batch (CRM): every command reports on its own; halt=0 runs them all",
            BatchV2(b24).make(
                {
                    "deal": ("crm.deal.get", {"id": deal}),
                    "missing": ("crm.deal.get", {"id": 999}),
                    "new": ("crm.deal.add", {"fields": {"TITLE": "Upsell", "OPPORTUNITY": 300}}),
                },
                halt_on_error=False,
            ),
        )
    return EXIT_OK


def _show(title: str, result: BatchResult[Any]) -> None:
    print(render(title, result))
