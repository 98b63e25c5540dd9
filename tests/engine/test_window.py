"""Chunked calls with batches in flight (``max_in_flight``), over real HTTP.

The FakePortal's ``Fault.delay`` holds a request outside the portal's lock, so batches on the
wire overlap there, and ``peak_concurrency`` says how many it was handling at once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import requests.adapters

from b24batch import (
    AjaxError,
    B24Hook,
    BatchByChunkV2,
    BatchByChunkV3,
    BatchV3,
    RateLimit,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    SQLiteStore,
)
from b24batch._engine.call_options import MAX_IN_FLIGHT, checked_in_flight
from b24batch._engine.window import Outcome, Window
from b24batch.testing import FakePortal, Fault
from b24batch.transport import POOL_SIZE
from tests.support.clocks import FakeTime

SLOW = 0.2  # seconds each delayed request is held: long enough for a window to fill
OPENING_HOLD = 0.5  # the same, for tests that count what left before the first answer
GATE_BOUND = 10.0  # the most a request waits for the others of the opening to leave


@pytest.fixture
def echo() -> Iterator[FakePortal]:
    with FakePortal(max_recorded=100_000) as portal:
        portal.register("test.echo", lambda query: {"n": query["n"]})
        portal.register("test.echo.get", lambda query: {"n": query["n"]})  # a read, by name
        portal.register("test.fail", _fail)
        portal.register("test.boom", _boom)
        yield portal


def _fail(query: dict[str, Any]) -> Any:
    raise FakePortal.CommandError("failed on purpose", code="TEST_FAILED")


def _boom(query: dict[str, Any]) -> Any:
    raise RuntimeError("a bug on the portal")


@pytest.fixture
def hook(echo: FakePortal) -> Iterator[B24Hook]:
    with B24Hook.from_webhook_url(echo.webhook_url, retry=None, rate_limit=None) as client:
        yield client


def echoes(count: int, method: str = "test.echo") -> list[Any]:
    return [(method, {"n": n}) for n in range(count)]


def test_a_window_of_8_keeps_call_order(echo: FakePortal, hook: B24Hook) -> None:
    """1 000 commands, 8 batches in flight: every result in call order, never past 8 at once."""
    echo.inject(Fault.delay(SLOW), times=20)
    result = BatchByChunkV3(hook).make(echoes(1000), max_in_flight=8)
    assert result.data == [{"n": n} for n in range(1000)]
    assert [chunk.positions for chunk in result.chunks] == [
        range(start, start + 50) for start in range(0, 1000, 50)
    ]
    assert 2 <= echo.peak_concurrency <= 8
    ids = sorted(int(r.query["bx24_request_id"].rsplit(".", 1)[1]) for r in echo.requests)
    assert ids == list(range(20))  # each chunk sent once, under its own index


def test_named_calls_through_a_window(echo: FakePortal, hook: B24Hook) -> None:
    """Named calls merge by name whatever order the answers come in."""
    echo.inject(Fault.delay(SLOW), times=4)
    calls = {f"c{n}": ("test.echo", {"n": n}) for n in range(200)}
    result = BatchByChunkV3(hook).make(calls, max_in_flight=4)
    assert list(result.data) == list(calls)
    assert result.data["c199"] == {"n": 199}
    assert echo.peak_concurrency <= 4


def test_iter_yields_in_chunk_order(echo: FakePortal, hook: B24Hook) -> None:
    """iter() with a window yields chunk results in order, each exactly once."""
    echo.inject(Fault.delay(SLOW), times=6)
    chunks = list(BatchByChunkV3(hook).iter(iter(echoes(300)), max_in_flight=6))
    assert [chunk.positions for chunk in chunks] == [range(s, s + 50) for s in range(0, 300, 50)]
    assert [entry["n"] for chunk in chunks for entry in chunk.data] == list(range(300))
    assert 2 <= echo.peak_concurrency <= 6


def test_auto_grows_with_latency_and_stays_within_the_bounds(echo: FakePortal) -> None:
    """'auto' starts with one batch and widens when batches are slow against the rate."""
    echo.inject(Fault.delay(SLOW), times=40)
    limit = RateLimit(burst=50, per_second=20.0)
    with B24Hook.from_webhook_url(echo.webhook_url, retry=None, rate_limit=limit) as client:
        result = BatchByChunkV3(client).make(echoes(500, "test.echo.get"), chunk_size=10)
    assert result.is_success
    assert 2 <= echo.peak_concurrency <= MAX_IN_FLIGHT


def test_auto_sends_writes_one_chunk_at_a_time_under_halt(echo: FakePortal, hook: B24Hook) -> None:
    """Under 'auto' and halt_on_error, nothing is sent after a chunk whose writes failed."""
    echo.inject(Fault.delay(SLOW), times=3)
    calls: list[Any] = [("tasks.task.add", {"fields": {"title": f"t{n}"}}) for n in range(20)]
    calls[7] = ("test.fail",)
    limit = RateLimit(burst=50, per_second=100.0)
    with B24Hook.from_webhook_url(echo.webhook_url, retry=None, rate_limit=limit) as client:
        result = BatchByChunkV3(client).make(calls, chunk_size=5)
    assert echo.peak_concurrency == 1
    assert len(echo.requests) == 2
    assert result.not_executed == tuple(range(10, 20))
    assert [error.chunk for error in result.errors] == [1]


def test_a_fixed_window_reports_the_chunks_in_flight_at_a_halt(
    echo: FakePortal, hook: B24Hook
) -> None:
    """halt with max_in_flight=4: the chunks already sent land and count; the rest do not go."""
    echo.inject(Fault.delay(SLOW), times=4)
    calls = echoes(100)
    calls[3] = ("test.fail",)
    result = BatchByChunkV3(hook).make(calls, chunk_size=10, max_in_flight=4)
    assert [chunk.positions for chunk in result.chunks] == [
        range(s, s + 10) for s in range(0, 40, 10)
    ]
    assert result.not_executed == tuple(range(40, 100))
    assert [(error.chunk, error.keys) for error in result.errors] == [(0, tuple(range(10)))]
    assert result.data[-1] == {"n": 39}
    assert len(echo.requests) == 4


def test_a_raised_error_keeps_every_chunk_that_landed(echo: FakePortal, hook: B24Hook) -> None:
    """A chunk that raises mid-window: the chunks in flight with it land in partial."""
    echo.inject(Fault.delay(SLOW), times=4)
    calls = echoes(80)
    calls[15] = ("test.boom",)  # a 500: raised, the batch may have run
    with pytest.raises(AjaxError) as info:
        BatchByChunkV3(hook).make(calls, chunk_size=10, max_in_flight=4, halt_on_error=False)
    partial = info.value.partial
    assert partial is not None
    # Chunk 0 landed and chunk 4 went out in its place before chunk 1 raised; 2 to 4 landed.
    assert [chunk.positions for chunk in partial.chunks] == [
        range(0, 10),
        range(20, 30),
        range(30, 40),
        range(40, 50),
    ]
    assert [(error.chunk, error.keys) for error in partial.errors] == [(1, tuple(range(10, 20)))]
    assert partial.not_executed == tuple(range(50, 80))
    assert len(echo.requests) == 5


def test_ctrl_c_stops_sending_and_keeps_what_landed(echo: FakePortal, hook: B24Hook) -> None:
    """KeyboardInterrupt from the progress callback: nothing more is sent, what flew lands."""
    echo.inject(Fault.delay(SLOW), times=3)

    def interrupt(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        BatchByChunkV3(hook).make(echoes(300), max_in_flight=3, progress=interrupt)
    partial = info.value.partial  # type: ignore[attr-defined]
    assert [chunk.positions for chunk in partial.chunks] == [
        range(0, 50),
        range(50, 100),
        range(100, 150),
    ]
    assert partial.not_executed == tuple(range(150, 300))
    assert len(echo.requests) == 3


def test_a_classic_chunker_uses_the_window_too(echo: FakePortal, hook: B24Hook) -> None:
    """BatchByChunkV2 with a window: results in call order."""
    echo.inject(Fault.delay(SLOW), times=4)
    calls = [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(200)]
    result = BatchByChunkV2(hook).make(calls, max_in_flight=4)
    assert sorted(result.data) == list(range(1, 201))
    assert [len(chunk.data) for chunk in result.chunks] == [50, 50, 50, 50]
    assert 2 <= echo.peak_concurrency <= 4


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        pytest.param(0, SdkError, "max_in_flight=0: pass 1 to 16", id="zero"),
        pytest.param(17, SdkError, "max_in_flight=17: pass 1 to 16", id="too-many"),
        pytest.param("8", SdkTypeError, "max_in_flight='8': pass 'auto' or a whole", id="str"),
        pytest.param(True, SdkTypeError, "max_in_flight=True", id="bool"),
    ],
)
def test_max_in_flight_is_checked(
    echo: FakePortal, hook: B24Hook, value: object, error: type[Exception], message: str
) -> None:
    """A window out of range or of the wrong type is refused before anything is sent."""
    with pytest.raises(error, match=re.escape(message)):
        BatchByChunkV3(hook).make(echoes(3), max_in_flight=value)  # type: ignore[call-overload]
    assert echo.requests == []


def test_the_connection_pool_holds_a_whole_window() -> None:
    """The client's own Session keeps a connection for every batch a window can have out."""
    assert POOL_SIZE >= MAX_IN_FLIGHT
    hook = B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/secret/")
    adapter = hook._session.get_adapter("https://example.bitrix24.com/")
    assert adapter._pool_maxsize == POOL_SIZE  # type: ignore[attr-defined]


def test_a_bad_row_read_ahead_waits_for_the_chunks_in_flight(
    echo: FakePortal, hook: B24Hook
) -> None:
    """iter() meets a bad row while reading ahead: the chunks already sent are yielded first."""
    echo.inject(Fault.delay(SLOW), times=3)
    rows: list[Any] = echoes(150)
    rows.append(("", {}))  # an empty method: met while planning the third chunk
    seen: list[range | None] = []

    def consume() -> None:
        for chunk in BatchByChunkV3(hook).iter(iter(rows), max_in_flight=3):
            seen.append(chunk.positions)

    with pytest.raises(SdkError, match=re.escape("calls[150] has an empty method name")):
        consume()
    assert seen == [range(0, 50), range(50, 100)]  # both were in flight when the row was read
    assert len(echo.requests) == 2


# The Window on its own: ``send`` and the chunks are stand-ins, the clock is the test's.


class _Ticks:
    """Monotonic seconds the test moves: ``latency`` is added at each read."""

    def __init__(self, latency: float) -> None:
        self.now, self.latency = 0.0, latency

    def __call__(self) -> float:
        self.now += self.latency
        return self.now


def _outcomes(window: Window, count: int) -> list[Outcome]:
    return list(window.run(iter(cast(Any, range(count)))))


def test_one_in_flight_sends_on_the_callers_thread() -> None:
    """max_in_flight=1: each chunk is sent on the caller's thread, its result handed back."""
    threads: list[threading.Thread] = []

    def send(chunk: Any) -> Any:
        threads.append(threading.current_thread())
        return chunk * 10

    window = Window(send, 1, rate=(50, 20.0))
    outcomes = _outcomes(window, 3)
    assert [(o.chunk, o.result, o.error) for o in outcomes] == [
        (0, 0, None),
        (1, 10, None),
        (2, 20, None),
    ]
    assert threads == [threading.current_thread()] * 3
    assert window.sent == 3


def test_one_in_flight_hands_back_what_send_raised() -> None:
    """max_in_flight=1: an exception from send is the chunk's outcome, in order."""
    failure = RuntimeError("the transport broke")

    def send(chunk: Any) -> Any:
        if chunk == 1:
            raise failure
        return chunk

    outcomes = _outcomes(Window(send, 1, rate=(50, 20.0)), 3)
    assert [(o.chunk, o.result, o.error) for o in outcomes] == [
        (0, 0, None),
        (1, None, failure),
        (2, 2, None),
    ]


@pytest.mark.parametrize("size", [2, MAX_IN_FLIGHT])
def test_a_window_fills_to_its_size_on_named_threads(size: int) -> None:
    """max_in_flight=N: N sends are on the wire at once, each on a b24batch-window thread."""
    barrier = threading.Barrier(size, timeout=5.0)  # broken unless N are in flight together
    names: list[str] = []

    def send(chunk: Any) -> Any:
        names.append(threading.current_thread().name)
        barrier.wait()
        return chunk

    outcomes = _outcomes(Window(send, size, rate=(50, 20.0)), size)
    assert [(o.result, o.error) for o in outcomes] == [(n, None) for n in range(size)]
    assert all(name.startswith("b24batch-window") for name in names)


def test_a_chunk_that_goes_alone_waits_and_then_flies_alone() -> None:
    """Chunk 1 must go alone: sent after chunk 0 landed, chunk 2 only after it; all yielded."""
    events: list[tuple[str, int]] = []
    lock = threading.Lock()

    def send(chunk: Any) -> Any:
        with lock:
            events.append(("sent", chunk))
        with lock:
            events.append(("answered", chunk))
        return chunk

    window = Window(send, 3, rate=(50, 20.0), alone=lambda chunk: chunk == 1)
    outcomes = _outcomes(window, 4)
    assert [o.result for o in outcomes] == [0, 1, 2, 3]
    assert events[:4] == [("sent", 0), ("answered", 0), ("sent", 1), ("answered", 1)]
    assert window.sent == 4


def test_drain_waits_for_the_chunks_still_in_flight() -> None:
    """Stopped after the first outcome: drain() hands back the two chunks still on the wire."""
    window = Window(lambda chunk: chunk, 3, rate=(50, 20.0))
    run = window.run(iter(cast(Any, range(10))))
    assert next(run).result == 0
    window.stop()
    assert [o.result for o in window.drain()] == [1, 2]
    assert window.sent == 3  # nothing after the stop


@pytest.mark.parametrize(
    ("latencies", "available", "size"),
    [
        pytest.param([0.5], 0.0, 6, id="10/s-x-0.5s-plus-one"),
        pytest.param([0.5, 0.5], 0.0, 13, id="smoothed-0.5-then-3s"),
        pytest.param([0.01], 5.0, 1, id="fast-stays-at-one-whatever-is-left"),
        pytest.param([0.1], 5.0, 5, id="slow-spends-the-burst-left"),
        pytest.param([0.1], 0.0, 2, id="two"),
        pytest.param([10.0], 0.0, 16, id="at-most-16"),
    ],
)
def test_auto_learns_its_size_from_the_latency(
    latencies: list[float], available: float, size: int
) -> None:
    """'auto': per_second x smoothed latency + 1, the burst left when above 1, within bounds."""
    clock = _Ticks(latencies[0])
    # The bucket has room for one at the opening, so the first answer's latency is one tick.
    room = iter([1.0])
    window = Window(
        lambda chunk: chunk,
        "auto",
        rate=(50, 10.0),
        available=lambda: next(room, available),
        clock=clock,
    )
    run = window.run(iter(cast(Any, range(100))))
    for latency in latencies:
        clock.latency = latency
        next(run)
    assert window.size == size
    run.close()


def test_auto_is_bounded_by_a_small_burst() -> None:
    """'auto' with a burst of 1: a slow portal still gets one batch at a time."""
    window = Window(lambda chunk: chunk, "auto", rate=(1, 10.0), clock=_Ticks(10.0))
    run = window.run(iter(cast(Any, range(3))))
    next(run)
    assert window.size == 1
    run.close()


@pytest.mark.parametrize("value", [1, MAX_IN_FLIGHT, "auto"])
def test_max_in_flight_accepts_its_bounds(value: object) -> None:
    """1, 16 and 'auto' are accepted as they are."""
    assert checked_in_flight(value) == value


# The opening of "auto": as wide as what is known allows from the first send.


class _Recorder(requests.Session):
    """A real Session that notes each request as it leaves and each answer as it comes.

    ``gate``: each request waits (at most ``GATE_BOUND`` seconds) until that many have left,
    so a loaded machine cannot let the first answer overtake a batch the window had already
    decided to send; the portal's hold then shows any batch sent beyond them.
    """

    def __init__(self, gate: int = 0) -> None:
        super().__init__()
        self.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=MAX_IN_FLIGHT))
        self.events: list[str] = []
        self._lock = threading.Condition()
        self._gate = gate

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self._lock:
            self.events.append("sent")
            self._lock.notify_all()
            self._lock.wait_for(lambda: self.events.count("sent") >= self._gate, GATE_BOUND)
        try:
            return super().send(request, **kwargs)
        finally:
            with self._lock:
                self.events.append("answered")

    def before_first_answer(self) -> int:
        """How many requests left before the first answer came back."""
        with self._lock:
            return self.events.index("answered") if "answered" in self.events else len(self.events)


def _other_process(portal: FakePortal, store: SQLiteStore, fake_time: FakeTime) -> B24Hook:
    return B24Hook.from_webhook_url(
        portal.webhook_url,
        rate_limit=RateLimit(burst=50, per_second=2.0),
        limit_store=store,
        retry=None,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
    )


def _auto_job(
    portal: FakePortal, store: SQLiteStore, fake_time: FakeTime, opening: int
) -> _Recorder:
    """Ten read-only chunks with 'auto', each held at the portal; the session's record."""
    # The first ``opening`` wait for one another before they go; each is then held long enough
    # at the portal for a batch sent beyond them to leave before the first answer comes.
    portal.inject(Fault.delay(OPENING_HOLD), times=10)
    session = _Recorder(gate=opening)
    with B24Hook.from_webhook_url(
        portal.webhook_url,
        rate_limit=RateLimit(burst=50, per_second=2.0),
        limit_store=store,
        retry=RetryPolicy(max_attempts=3, max_wait=600.0),
        session=session,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
    ) as client:
        result = BatchByChunkV3(client).make(echoes(50, "test.echo.get"), chunk_size=5)
    assert result.data == [{"n": n} for n in range(50)]
    assert [chunk.attempts for chunk in result.chunks] == [1] * 10  # no 503, no 429
    return session


@pytest.mark.parametrize(("spent", "opening"), [(0, 10), (40, 8), (47, 1)])
def test_auto_opens_with_the_room_the_shared_bucket_has(
    echo: FakePortal, tmp_path: Path, spent: int, opening: int
) -> None:
    """Another process spent part of the portal's bucket (ceiling 48): the job's first batches
    go together, as many as the shared bucket has room for (all ten when it is full), and
    none past it: the bucket's clock stands still, so the room is exact."""
    fake_time = FakeTime()
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    with _other_process(echo, store, fake_time) as other:
        for _ in range(spent):
            BatchV3(other).make([("test.echo.get", {"n": 0})])
    assert _auto_job(echo, store, fake_time, opening).before_first_answer() == opening
    assert echo.peak_concurrency >= opening


@pytest.mark.parametrize(("operating", "opening"), [(None, 10), (300.0, 4), (415.0, 1)])
def test_auto_opens_with_the_room_the_shared_operating_figure_leaves(
    echo: FakePortal, tmp_path: Path, operating: float | None, opening: int
) -> None:
    """Another process's answer put the method at ``operating`` of 480 s (margin 30) in the
    store: before any answer each batch counts as the margin, so as many go together as fit
    below 450 — four from 300, only the first from 415 — and the rest follow the answers."""
    fake_time = FakeTime()
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    if operating is not None:
        time = {"operating": operating, "operating_reset_at": fake_time.wall + 300}
        echo.inject(Fault.response(400, {"error": {"code": "BAD", "message": "no"}, "time": time}))
        with _other_process(echo, store, fake_time) as other:
            BatchV3(other).make([("test.echo.get", {"n": 0})])
            assert other.limit_state().operating == operating
    assert _auto_job(echo, store, fake_time, opening).before_first_answer() == opening


@pytest.mark.parametrize(
    ("rate", "available", "opening"),
    [
        pytest.param((50, 20.0), 48.0, MAX_IN_FLIGHT, id="full-bucket-16"),
        pytest.param((50, 20.0), 5.0, 5, id="five-left-five"),
        pytest.param((50, 20.0), 0.0, 1, id="none-left-one"),
        pytest.param((3, 20.0), 3.0, 3, id="a-burst-of-3"),
    ],
)
def test_auto_sends_the_opening_before_any_answer(
    rate: tuple[float, float], available: float, opening: int
) -> None:
    """The Window alone: before it takes its first answer it has sent what the bucket has
    room for, at most 16 and at most the burst (at least one)."""
    window = Window(lambda chunk: chunk, "auto", rate=rate, available=lambda: available)
    run = window.run(iter(cast(Any, range(40))))
    next(run)
    assert window.sent == opening
    run.close()


def test_a_fast_portal_gets_one_at_a_time_once_the_opening_has_landed() -> None:
    """Answers at once against the drain rate: the opening of 5 goes together, then the
    window is one, and the next batch goes only when all five have landed."""
    window = Window(
        lambda chunk: chunk, "auto", rate=(50, 10.0), available=lambda: 5.0, clock=_Ticks(0.001)
    )
    run = window.run(iter(cast(Any, range(40))))
    sent = [(next(run).chunk, window.sent) for _ in range(7)]
    assert window.size == 1
    assert sent == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 6), (6, 7)]
    run.close()


# A write job under halt_on_error=True goes one batch at a time, and says so once.

SERIAL = "its chunks go one batch at a time"


def _serial_notes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if SERIAL in r.getMessage()]


@pytest.mark.parametrize("face", ["make", "iter"])
def test_a_write_job_under_halt_says_once_that_it_runs_one_batch_at_a_time(
    hook: B24Hook, caplog: pytest.LogCaptureFixture, face: str
) -> None:
    """Six chunks of writes with the defaults: one INFO line for the call, naming the option
    for a bulk job; a second call says it again, once."""
    caplog.set_level(logging.INFO, logger="b24batch")
    calls = [("tasks.task.add", {"fields": {"title": f"t{n}"}}) for n in range(30)]
    chunked = BatchByChunkV3(hook)
    for _ in range(2):
        if face == "make":
            assert chunked.make(calls, chunk_size=5).is_success
        else:
            assert len(list(chunked.iter(iter(calls), chunk_size=5))) == 6
    notes = _serial_notes(caplog)
    assert [(r.levelno, r.name) for r in notes] == [(logging.INFO, "b24batch")] * 2
    assert "pass halt_on_error=False" in notes[0].getMessage()


@pytest.mark.parametrize(
    ("calls", "options"),
    [
        pytest.param(echoes(30, "test.echo.get"), {}, id="reads"),
        pytest.param(echoes(30), {"halt_on_error": False}, id="halt-off"),
        pytest.param(echoes(30), {"max_in_flight": 4}, id="a-fixed-window"),
        pytest.param(echoes(5), {}, id="one-chunk"),
    ],
)
def test_no_note_when_the_job_is_not_kept_to_one_batch(
    hook: B24Hook, caplog: pytest.LogCaptureFixture, calls: list[Any], options: dict[str, Any]
) -> None:
    """Reads, halt_on_error=False, a fixed window, a single chunk: nothing to say."""
    caplog.set_level(logging.INFO, logger="b24batch")
    assert BatchByChunkV3(hook).make(calls, chunk_size=5, **options).is_success
    assert _serial_notes(caplog) == []


def test_the_progress_bar_says_a_write_job_runs_one_batch_at_a_time(
    hook: B24Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True: the bar's description says why the job is sequential."""
    pytest.importorskip("tqdm")
    calls = [("tasks.task.add", {"fields": {"title": f"t{n}"}}) for n in range(10)]
    BatchByChunkV3(hook).make(calls, chunk_size=5, progress=True)
    assert "b24batch (one batch at a time: halt_on_error=True)" in capsys.readouterr().err
