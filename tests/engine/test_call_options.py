"""One call's options, checked once: ``CallOptions.checked``, ``ids`` and the id checks.

Pure functions, tested directly: every option wrong in each way, with the whole message where
the message is what the caller reads to fix the call.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import pytest

from b24batch._engine.call_options import (
    MAX_ID_LENGTH,
    MAX_IN_FLIGHT,
    CallOptions,
    checked_idempotency_key,
    checked_in_flight,
    checked_request_id,
)
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.commands import MAX_COMMANDS
from b24batch.errors import SdkError, SdkTypeError


@attrs.frozen
class Task:
    id: int


@attrs.frozen
class Unresolvable:
    owner: NoSuchType  # type: ignore[name-defined]  # noqa: F821


def test_limits_are_the_portals() -> None:
    """Ids and keys are capped at 255 characters and the window at 16 batches."""
    assert (MAX_ID_LENGTH, MAX_IN_FLIGHT, MAX_COMMANDS) == (255, 16, 50)


def test_defaults() -> None:
    """No option given: halt, JSON data, no key, no isolation, 50 a chunk, one in flight."""
    options = CallOptions.checked(V3)
    assert uuid.UUID(options.request_id).version == 4
    assert options == CallOptions(request_id=options.request_id)
    assert (
        options.halt_on_error,
        options.return_ajax_result,
        options.result_type,
        options.idempotency_key,
        options.isolate_errors,
        options.chunk_size,
        options.max_in_flight,
    ) == (True, False, None, None, False, MAX_COMMANDS, 1)


def test_every_option_given_is_kept() -> None:
    """Each option passed reaches the CallOptions unchanged."""
    options = CallOptions.checked(
        V3,
        halt_on_error=False,
        return_ajax_result=True,
        request_id="req",
        result_type=Task,
        idempotency_key="key",
        isolate_errors=True,
        chunk_size=7,
        max_in_flight="auto",
    )
    assert options == CallOptions(
        request_id="req",
        halt_on_error=False,
        return_ajax_result=True,
        result_type=Task,
        idempotency_key="key",
        isolate_errors=True,
        chunk_size=7,
        max_in_flight="auto",
    )
    assert type(options) is CallOptions


def test_a_generated_key_is_a_new_uuid4() -> None:
    """idempotency_key=True generates a fresh uuid4 hex for each call."""
    first = CallOptions.checked(V3, idempotency_key=True).idempotency_key
    second = CallOptions.checked(V3, idempotency_key=True).idempotency_key
    assert first is not None
    assert second is not None
    assert uuid.UUID(hex=first).version == 4
    assert first != second


def test_classic_takes_no_idempotency_key() -> None:
    """A key for the classic batch is refused, naming why and BatchV3."""
    with pytest.raises(SdkError) as info:
        CallOptions.checked(V2, idempotency_key="key")
    assert type(info.value) is SdkError
    assert str(info.value) == (
        "idempotency_key: the classic batch endpoint has no Idempotency-Key, so a classic batch "
        "with a write is never sent again after a failure that may have run it; REST 3.0 "
        "methods take one with BatchV3"
    )


def test_classic_without_a_key_is_checked() -> None:
    """The classic protocol with no key builds options like REST 3.0's."""
    options = CallOptions.checked(V2, request_id="r", chunk_size=3)
    assert (options.request_id, options.idempotency_key, options.chunk_size) == ("r", None, 3)


@pytest.mark.parametrize("size", [1, MAX_COMMANDS], ids=["one", "fifty"])
def test_chunk_size_bounds_are_taken(size: int) -> None:
    """chunk_size 1 and 50 are both whole batches."""
    assert CallOptions.checked(V3, chunk_size=size).chunk_size == size


@pytest.mark.parametrize(
    "size",
    [pytest.param(True, id="bool"), pytest.param("5", id="str"), pytest.param(5.0, id="float")],
)
def test_chunk_size_of_the_wrong_type(size: object) -> None:
    """chunk_size that is not a whole number raises SdkTypeError naming the range."""
    with pytest.raises(SdkTypeError) as info:
        CallOptions.checked(V3, chunk_size=size)
    assert str(info.value) == f"chunk_size={size!r}: pass a whole number from 1 to 50"


@pytest.mark.parametrize("size", [0, MAX_COMMANDS + 1, -1], ids=["zero", "51", "negative"])
def test_chunk_size_out_of_range(size: int) -> None:
    """chunk_size outside 1..50 raises SdkError (not a type error) naming the range."""
    with pytest.raises(SdkError) as info:
        CallOptions.checked(V3, chunk_size=size)
    assert type(info.value) is SdkError
    assert str(info.value) == f"chunk_size={size}: a batch takes 1 to 50 commands"


@pytest.mark.parametrize("name", ["halt_on_error", "return_ajax_result", "isolate_errors"])
@pytest.mark.parametrize(
    "value",
    [pytest.param(1, id="int"), pytest.param("yes", id="str"), pytest.param(None, id="none")],
)
def test_flags_take_only_bools(name: str, value: object) -> None:
    """A flag that is not True or False raises SdkTypeError naming the flag."""
    kwargs: dict[str, Any] = {name: value}
    with pytest.raises(SdkTypeError) as info:
        CallOptions.checked(V3, **kwargs)
    assert str(info.value) == f"{name}={value!r}: pass True or False"


def test_result_type_is_checked_before_sending() -> None:
    """A result_type cattrs cannot structure fails at once, naming result_type."""
    with pytest.raises(SdkTypeError) as info:
        CallOptions.checked(V3, result_type=Unresolvable)
    assert str(info.value).startswith("result_type=")
    assert "cattrs cannot structure it" in str(info.value)


def test_request_id_is_checked() -> None:
    """A bad request_id is refused by checked() itself."""
    with pytest.raises(SdkError, match=r"^request_id must be 1 to 255 printable characters"):
        CallOptions.checked(V3, request_id="")


def test_idempotency_key_is_checked() -> None:
    """A bad idempotency_key is refused by checked() itself."""
    with pytest.raises(SdkError, match=r"^idempotency_key 'k ' starts or ends with a space"):
        CallOptions.checked(V3, idempotency_key="k ")


def test_max_in_flight_is_checked() -> None:
    """A bad max_in_flight is refused by checked() itself, and a good one kept."""
    assert CallOptions.checked(V3, max_in_flight=MAX_IN_FLIGHT).max_in_flight == 16
    with pytest.raises(SdkError, match=r"^max_in_flight=0: "):
        CallOptions.checked(V3, max_in_flight=0)


@pytest.mark.parametrize("name", ["request_id", "idempotency_key"])
def test_chunked_ids_leave_room_for_the_chunk_suffix(name: str) -> None:
    """A chunked call takes ids of up to 245 characters, so '.<chunk>' still fits 255."""
    longest: dict[str, Any] = {name: "x" * 245}
    assert getattr(CallOptions.checked(V3, chunk_size=10, **longest), name) == "x" * 245
    too_long: dict[str, Any] = {name: "x" * 246}
    with pytest.raises(SdkError) as info:
        CallOptions.checked(V3, chunk_size=10, **too_long)
    assert str(info.value) == (
        f"{name} is 246 characters; chunked calls append '.<chunk>', so keep it to 245"
    )


@pytest.mark.parametrize("name", ["request_id", "idempotency_key"])
def test_single_batch_ids_take_the_full_length(name: str) -> None:
    """A single batch takes ids of 255 characters: no suffix is appended."""
    longest: dict[str, Any] = {name: "x" * 255}
    assert getattr(CallOptions.checked(V3, **longest), name) == "x" * 255


def test_ids_of_the_one_batch() -> None:
    """ids(None) is the call's own request id and key, unsuffixed."""
    options = CallOptions(request_id="req", idempotency_key="key")
    assert options.ids(None) == ("req", "key")
    assert CallOptions(request_id="req").ids(None) == ("req", None)


def test_ids_of_chunk_k() -> None:
    """ids(k) suffixes '.k' to the request id and to the key, and keeps no key as None."""
    assert CallOptions(request_id="req", idempotency_key="key").ids(3) == ("req.3", "key.3")
    assert CallOptions(request_id="req").ids(0) == ("req.0", None)


def test_request_id_none_is_a_new_uuid4() -> None:
    """No request id: each call gets a fresh uuid4 in its canonical text."""
    first, second = checked_request_id(None), checked_request_id(None)
    assert str(uuid.UUID(first)) == first
    assert uuid.UUID(first).version == 4
    assert first != second


@pytest.mark.parametrize("text", ["a", "x" * 255, "id with spaces é"], ids=["1", "255", "unicode"])
def test_request_id_in_range_is_kept(text: str) -> None:
    """A request id of 1 to 255 printable characters is returned as given."""
    assert checked_request_id(text) == text


@pytest.mark.parametrize("value", [5, b"id"], ids=["int", "bytes"])
def test_request_id_of_the_wrong_type(value: object) -> None:
    """A request id that is not a str raises SdkTypeError naming its type."""
    with pytest.raises(SdkTypeError) as info:
        checked_request_id(value)
    assert str(info.value) == f"request_id is a {type(value).__name__}; pass a str or None"


@pytest.mark.parametrize("text", ["", "x" * 256, "a\nb"], ids=["empty", "256", "newline"])
def test_request_id_out_of_range(text: str) -> None:
    """An empty, too long or unprintable request id raises SdkError naming the fix."""
    with pytest.raises(SdkError) as info:
        checked_request_id(text)
    assert type(info.value) is SdkError
    assert str(info.value) == (
        "request_id must be 1 to 255 printable characters; leave it None for a generated one"
    )


@pytest.mark.parametrize("key", [None, False], ids=["none", "false"])
def test_no_idempotency_key(key: object) -> None:
    """None and False mean no key."""
    assert checked_idempotency_key(key) is None


def test_idempotency_key_true_is_a_new_uuid4_hex() -> None:
    """True generates 32 hex digits of a fresh uuid4."""
    first, second = checked_idempotency_key(True), checked_idempotency_key(True)
    assert first is not None
    assert first == uuid.UUID(hex=first).hex
    assert uuid.UUID(hex=first).version == 4
    assert first != second


@pytest.mark.parametrize(
    "key", ["k", "x" * 255, "~!a", "!a~", "a b"], ids=["1", "255", "tilde", "bang", "inner-space"]
)
def test_idempotency_key_in_range_is_kept(key: str) -> None:
    """A key of 1 to 255 printable ASCII characters without end spaces is kept."""
    assert checked_idempotency_key(key) == key


@pytest.mark.parametrize("key", [5, 1.5, b"k"], ids=["int", "float", "bytes"])
def test_idempotency_key_of_the_wrong_type(key: object) -> None:
    """A key that is neither str nor bool raises SdkTypeError naming its type."""
    with pytest.raises(SdkTypeError) as info:
        checked_idempotency_key(key)
    assert str(info.value) == (
        f"idempotency_key is a {type(key).__name__}; pass a str, True to generate one, or None"
    )


@pytest.mark.parametrize(
    ("key", "length"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("x" * 256, 256, id="256"),
        pytest.param("é", 1, id="non-ascii"),
        pytest.param("a\x7f", 2, id="del"),
        pytest.param("\x1fa", 2, id="control"),
        pytest.param("a\tb", 3, id="tab"),
    ],
)
def test_idempotency_key_out_of_range(key: str, length: int) -> None:
    """A key that is empty, too long or not printable ASCII raises SdkError with its length."""
    with pytest.raises(SdkError) as info:
        checked_idempotency_key(key)
    assert type(info.value) is SdkError
    assert str(info.value) == (
        f"idempotency_key must be 1 to 255 printable ASCII characters (got {length} "
        f"characters); pass True to have one generated"
    )


@pytest.mark.parametrize("key", [" k", "k ", " "], ids=["leading", "trailing", "only"])
def test_idempotency_key_with_an_end_space(key: str) -> None:
    """A key that starts or ends with a space cannot be a header value: SdkError says so."""
    with pytest.raises(SdkError) as info:
        checked_idempotency_key(key)
    assert str(info.value) == (
        f"idempotency_key {key!r} starts or ends with a space, which an HTTP header cannot "
        f"carry; remove it, or pass True to have one generated"
    )


@pytest.mark.parametrize("value", ["auto", 1, 2, MAX_IN_FLIGHT], ids=["auto", "1", "2", "16"])
def test_in_flight_in_range_is_kept(value: object) -> None:
    """'auto' and 1..16 are returned as given."""
    assert checked_in_flight(value) == value


@pytest.mark.parametrize(
    "value",
    [True, False, 2.0, "2", "AUTO", None],
    ids=["true", "false", "float", "str", "upper-auto", "none"],
)
def test_in_flight_of_the_wrong_type(value: object) -> None:
    """Anything but 'auto' or an int raises SdkTypeError naming both choices."""
    with pytest.raises(SdkTypeError) as info:
        checked_in_flight(value)
    assert str(info.value) == (
        f"max_in_flight={value!r}: pass 'auto' or a whole number from 1 to 16"
    )


@pytest.mark.parametrize("value", [0, MAX_IN_FLIGHT + 1, -3], ids=["0", "17", "negative"])
def test_in_flight_out_of_range(value: int) -> None:
    """A number outside 1..16 raises SdkError naming the range."""
    with pytest.raises(SdkError) as info:
        checked_in_flight(value)
    assert type(info.value) is SdkError
    assert str(info.value) == f"max_in_flight={value}: pass 1 to 16 (1 sends one batch at a time)"
