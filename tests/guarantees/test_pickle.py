"""Errors and results travel: every public error and result round-trips through pickle.

Celery result backends, ``multiprocessing`` and ``ProcessPoolExecutor`` pickle what a task
returns or raises. The errors here come from real batches against a FakePortal, so they carry
the fields the SDK really sets.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import attrs
import pytest

from b24batch import (
    AjaxError,
    AuthError,
    B24Error,
    B24Hook,
    B24OAuth,
    BatchByChunkV3,
    BatchResult,
    BatchV3,
    ChunkedResult,
    ChunkError,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.testing import FakePortal, Fault
from tests.conftest import SECRET

PROTOCOLS = [
    pytest.param(pickle.DEFAULT_PROTOCOL, id="default"),
    pytest.param(pickle.HIGHEST_PROTOCOL, id="highest"),
]
MISSING = [("tasks.task.get", {"id": 999})]
READ = [("tasks.task.get", {"id": 1})]


@attrs.frozen
class Task:
    """A result_type for the typed round trip; module level, so pickle can find it."""

    id: int
    title: str


@attrs.frozen
class Got:
    """tasks.task.get's result entry, typed."""

    item: Task


def _same(left: Any, right: Any, path: str = "$", seen: set[int] | None = None) -> None:
    """Assert ``right`` is a faithful copy of ``left``, field by field, recursively."""
    assert type(left) is type(right), path
    seen = set() if seen is None else seen
    if id(left) in seen:  # a cycle: error -> partial -> its ChunkError -> error
        return
    seen.add(id(left))
    if isinstance(left, BaseException):
        assert left.args == right.args, path
        assert str(left) == str(right), path
        assert vars(left).keys() == vars(right).keys(), path
        for name, value in vars(left).items():
            _same(value, vars(right)[name], f"{path}.{name}", seen)
    elif attrs.has(type(left)):
        for field in attrs.fields(type(left)):
            _same(
                getattr(left, field.name), getattr(right, field.name), f"{path}.{field.name}", seen
            )
    elif isinstance(left, list | tuple):
        assert len(left) == len(right), path
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _same(a, b, f"{path}[{index}]", seen)
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), path
        for key, value in left.items():
            _same(value, right[key], f"{path}[{key!r}]", seen)
    else:
        assert left == right, path


def _raised(call: Callable[[], object]) -> B24Error:
    with pytest.raises(B24Error) as info:
        call()
    return info.value


def _webhook(portal: FakePortal) -> B24Hook:
    return B24Hook.from_webhook_url(
        portal.webhook_url, timeout=(2.0, 5.0), retry=None, rate_limit=None
    )


def _faulted(portal: FakePortal, client: B24Hook, fault: Fault) -> B24Error:
    portal.inject(fault)
    return _raised(lambda: BatchV3(client).make(READ))


def _broken_refresh() -> str:
    raise RuntimeError("refresh refused for client_secret=cs-0123 refresh_token=rt-4567")


def _errors(portal: FakePortal, client: B24Hook) -> Iterator[tuple[str, B24Error]]:
    """One error of every public class, each as the SDK really raises it."""
    portal.add_task(id=1, title="One")
    yield "sdk", _raised(lambda: BatchV3(client).make([{"method": "x", "query": {}}]))
    yield "sdk-type", _raised(lambda: B24Hook.from_webhook_url(b"x"))  # type: ignore[arg-type]
    failed = BatchV3(client).make([("tasks.task.add", {"fields": {}})])
    yield "ajax-validation", failed.errors[0]
    yield "rate", _faulted(portal, client, Fault.rate_limited())
    yield "operating", _faulted(portal, client, Fault.operating_limited())
    yield (
        "retry-after",
        _faulted(
            portal,
            client,
            Fault.response(503, {"error": "QUERY_LIMIT_EXCEEDED"}, {"Retry-After": "7"}),
        ),
    )
    yield "transport", _faulted(portal, client, Fault.drop_after())
    yield "decode-html", _faulted(portal, client, Fault.html())
    yield "decode-typed", _raised(lambda: BatchV3(client).make(READ, result_type=int))
    with B24Hook.from_webhook_url(
        portal.webhook_url.replace(SECRET, "wrong"), retry=None, rate_limit=None
    ) as wrong:
        yield "auth", _raised(lambda: BatchV3(wrong).make(READ))
    portal.inject(Fault.response(400, {"error": {"code": "X", "message": "boom"}}), times=3)
    chunked = BatchByChunkV3(client).make(READ * 3, chunk_size=1, halt_on_error=False)
    yield "chunked-raise", _raised(chunked.raise_for_errors)


@pytest.fixture
def errors(portal: FakePortal, client: B24Hook) -> dict[str, B24Error]:
    """name -> an error of each kind, from real batches."""
    return dict(_errors(portal, client))


def test_the_error_table_covers_every_public_error_class(errors: dict[str, B24Error]) -> None:
    """The table below holds an instance of each public error class."""
    classes = {type(error) for error in errors.values()}
    assert classes >= {
        SdkError,
        SdkTypeError,
        AjaxError,
        AuthError,
        RateLimitError,
        OperatingLimitError,
        TransportError,
        DecodeError,
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_error_round_trips_with_all_its_fields(
    errors: dict[str, B24Error], protocol: int
) -> None:
    """Each error unpickles as its own class with message, code, status and every attribute."""
    for name, error in errors.items():
        copy = pickle.loads(pickle.dumps(error, protocol=protocol))
        _same(error, copy, name)


def test_the_fields_that_matter_arrive_with_their_values(errors: dict[str, B24Error]) -> None:
    """Spot values: validation rows, retry_after, retry_at, outcome_unknown, result, partial."""
    copies = {name: pickle.loads(pickle.dumps(error)) for name, error in errors.items()}
    validation = copies["ajax-validation"]
    assert validation.validation[0].field == "title"
    assert validation.status == 400
    assert validation.request_id == errors["ajax-validation"].request_id
    assert copies["retry-after"].retry_after == 7.0
    assert copies["operating"].retry_at == errors["operating"].retry_at is not None
    assert copies["transport"].outcome_unknown is True
    typed = copies["decode-typed"]
    assert isinstance(typed.result, BatchResult)
    assert typed.result.data == [{"item": errors["decode-typed"].result.data[0]["item"]}]
    chunked = copies["chunked-raise"]
    assert isinstance(chunked.partial, ChunkedResult)
    assert [other.code for other in chunked.others] == ["X", "X"]


def test_an_error_that_is_in_its_own_partial_result_keeps_the_cycle(
    errors: dict[str, B24Error],
) -> None:
    """raise_for_errors' error sits in its partial's ChunkError; the copy points at itself."""
    copy = pickle.loads(pickle.dumps(errors["chunked-raise"]))
    assert copy.partial is not None
    assert copy.partial.errors[0].error is copy


def test_an_attribute_added_later_travels_without_code_for_it() -> None:
    """A field the SDK sets on an error (here a new one) is carried, as __dict__ is."""
    error = AjaxError("m", code="C", status=400, request_id="r")
    error.maybe_executed = (0, 2)  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error))
    assert copy.maybe_executed == (0, 2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_failed_batch_result_round_trips(
    portal: FakePortal, client: B24Hook, protocol: int
) -> None:
    """A BatchResult with errors, and one of AjaxResult items, unpickle equal field by field."""
    portal.add_task(id=1, title="One")
    failed = BatchV3(client).make(MISSING)
    ajax = BatchV3(client).make(READ, return_ajax_result=True)
    typed = BatchV3(client).make(READ, result_type=Got)
    for result in (failed, ajax, typed):
        _same(result, pickle.loads(pickle.dumps(result, protocol=protocol)))
    assert not failed.is_success
    assert pickle.loads(pickle.dumps(typed)).data[0] == Got(Task(id=1, title="One"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_chunked_result_and_its_chunk_errors_round_trip(
    portal: FakePortal, client: B24Hook, protocol: int
) -> None:
    """ChunkedResult with failed chunks and not_executed, and a ChunkError, round-trip."""
    portal.add_task(id=1, title="One")
    portal.inject(Fault.response(400, {"error": {"code": "X", "message": "boom"}}))
    result = BatchByChunkV3(client).make(READ * 3, chunk_size=1)
    assert result.errors
    assert result.not_executed == (1, 2)
    copy = pickle.loads(pickle.dumps(result, protocol=protocol))
    _same(result, copy)
    chunk_error = pickle.loads(pickle.dumps(result.errors[0], protocol=protocol))
    assert isinstance(chunk_error, ChunkError)
    assert str(chunk_error) == str(result.errors[0])


def test_pickles_stay_redacted(errors: dict[str, B24Error]) -> None:
    """No pickle of any error holds the webhook secret (the HTML page echoed it)."""
    for name, error in errors.items():
        assert SECRET.encode() not in pickle.dumps(error), name
        assert SECRET not in repr(vars(pickle.loads(pickle.dumps(error)))), name


def test_refresh_error_travels_as_its_type_name_only(portal: FakePortal) -> None:
    """AuthError.refresh_error becomes a B24Error naming its type; its token-laden text stays."""
    with B24OAuth(
        portal.oauth_endpoint, portal.access_token, refresh=_broken_refresh, rate_limit=None
    ) as oauth:
        portal.expire_token()
        error = _raised(lambda: BatchV3(oauth).make(READ))
    assert isinstance(error, AuthError)
    assert isinstance(error.refresh_error, RuntimeError)
    data = pickle.dumps(error)
    copy = pickle.loads(data)
    assert b"rt-4567" not in data
    assert b"cs-0123" not in data
    assert type(copy.refresh_error) is B24Error
    assert "builtins.RuntimeError" in str(copy.refresh_error)
    assert copy.code == error.code == "expired_token"
    assert error.refresh_error.args[0].endswith("rt-4567")  # the original is untouched


def test_an_unpicklable_refresh_error_does_not_stop_the_auth_error() -> None:
    """A refresh_error holding a lock (unpicklable) still lets its AuthError pickle."""

    class Held(Exception):
        pass

    error = AuthError("refresh failed", code="expired_token", status=401)
    error.refresh_error = Held(threading.Lock())
    copy = pickle.loads(pickle.dumps(error))
    assert "Held" in str(copy.refresh_error)


def _batch_in_a_child(secret: str) -> BatchResult[Any]:
    """Run in a spawned process: start a FakePortal, return a failed batch, raise an error."""
    with FakePortal(secret=secret) as portal, _webhook(portal) as client:
        failed = BatchV3(client).make(MISSING)
        if secret.endswith("raise"):
            failed.raise_for_errors()
        return failed


def test_errors_and_failed_results_come_back_from_a_process_pool() -> None:
    """Through ProcessPoolExecutor (spawn): a failed BatchResult returns, an AjaxError raises."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        returned = pool.submit(_batch_in_a_child, "childsecret").result(timeout=60)
        raised = pool.submit(_batch_in_a_child, "childsecretraise")
        with pytest.raises(AjaxError) as info:
            raised.result(timeout=60)
    assert isinstance(returned, BatchResult)
    assert not returned.is_success
    [error] = returned.errors
    assert error.code == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    assert error.status == 400
    assert info.value.code == error.code
    assert info.value.message == "Record with ID = `999` not found"
    assert info.value.request_id is not None


def test_what_may_have_run_travels(portal: FakePortal, client: B24Hook) -> None:
    """maybe_executed, its words in the message, and an isolated error's key survive pickling."""
    failed = BatchV3(client).make(
        [("tasks.task.add", {"fields": {"title": "a"}}), ("tasks.task.get", {"id": 99})]
    )
    copy = pickle.loads(pickle.dumps(failed))
    assert copy.maybe_executed == failed.maybe_executed == (0,)
    assert str(copy.errors[0]) == str(failed.errors[0])
    isolated = BatchV3(client).make([("tasks.task.get", {"id": 99})] * 2, isolate_errors=True)
    assert dict(pickle.loads(pickle.dumps(isolated)).errors_by_key).keys() == {0, 1}
