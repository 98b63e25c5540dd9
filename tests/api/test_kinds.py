"""ErrorKind: every error says what kind of failure it is, from one table of the portal's codes."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from b24batch import (
    AjaxError,
    AuthError,
    B24Hook,
    BatchV3,
    DecodeError,
    ErrorKind,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.kinds import CODE_KINDS, kind_of_code
from b24batch.testing import FakePortal

ROOT = Path(__file__).resolve().parents[2]
V3 = "BITRIX_REST_V3_EXCEPTION_"


def _protocol() -> Path:
    for parent in ROOT.parents:
        candidate = parent / "shared" / "protocol.md"
        if candidate.is_file():
            return candidate
    pytest.skip("shared/protocol.md is not next to this checkout")


def _protocol_codes(text: str) -> set[str]:
    """Every error code protocol.md names: its HTTP tables' codes and every CODE_LIKE token."""
    codes = set(re.findall(r"`((?:…|BITRIX_REST_V3_EXCEPTION_)?[A-Z0-9]+(?:_[A-Z0-9]+)+)`", text))
    codes |= set(re.findall(r"`(…[A-Z]+EXCEPTION)`", text))
    for line in text.splitlines():
        if re.match(r"\| [1-5]\d\d \|", line):
            codes |= {c for c in re.findall(r"`([A-Za-z_…]+)`", line) if "_" in c or "…" in c}
    return {code.replace("…", V3) for code in codes}


def test_the_table_covers_every_code_in_the_protocol() -> None:
    """Every code protocol.md names has an entry in CODE_KINDS."""
    codes = _protocol_codes(_protocol().read_text(encoding="utf-8"))
    assert {"expired_token", f"{V3}METHODNOTFOUNDEXCEPTION", "OVERLOAD_LIMIT"} <= codes
    assert sorted(codes - set(CODE_KINDS)) == []


def test_the_table_covers_every_code_the_fake_portal_answers() -> None:
    """Every code the FakePortal's routes (REST 3.0 and classic) can answer has an entry."""
    source = "".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "b24batch" / "testing").glob("*.py")
    )
    codes = set(re.findall(r'"(BITRIX_REST_V3_EXCEPTION_[A-Z_]+|ERROR_[A-Z_]+)"', source))
    codes |= set(re.findall(r'(?<!\w)(?:code=|_classic\(|_error\()\s*"([A-Za-z_]+)"', source))
    assert {"ERROR_BATCH_LENGTH_EXCEEDED", "INVALID_REQUEST", f"{V3}INVALIDORDEREXCEPTION"} <= codes
    assert sorted(codes - set(CODE_KINDS)) == []


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        pytest.param(
            f"{V3}VALIDATION_REQUESTVALIDATIONEXCEPTION", 400, ErrorKind.INPUT, id="valid"
        ),
        pytest.param(f"{V3}UNKNOWNDTOPROPERTYEXCEPTION", 400, ErrorKind.INPUT, id="select"),
        pytest.param(f"{V3}ENTITYNOTFOUNDEXCEPTION", 400, ErrorKind.NOT_FOUND, id="not-found"),
        pytest.param(f"{V3}INSUFFICIENTSCOPEEXCEPTION", 403, ErrorKind.ACCESS, id="scope"),
        pytest.param("insufficient_scope", 403, ErrorKind.ACCESS, id="classic-scope"),
        pytest.param("expired_token", 401, ErrorKind.AUTH, id="expired"),
        pytest.param("QUERY_LIMIT_EXCEEDED", 503, ErrorKind.LIMIT, id="rate"),
        pytest.param("OPERATION_TIME_LIMIT", 429, ErrorKind.LIMIT, id="operating"),
        pytest.param("OVERLOAD_LIMIT", 503, ErrorKind.PORTAL, id="overload"),
        pytest.param("PORTAL_DELETED", 500, ErrorKind.PORTAL, id="deleted"),
        pytest.param("ERROR_METHOD_NOT_FOUND", 404, ErrorKind.INPUT, id="unknown-method"),
        pytest.param("ERROR_BATCH_METHOD_NOT_ALLOWED", 200, ErrorKind.INPUT, id="classic-nested"),
    ],
)
def test_known_codes_have_their_kind(code: str, status: int, kind: ErrorKind) -> None:
    """A code in the table gives its kind, whatever the status."""
    assert AjaxError("x", code=code, status=status).kind is kind


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(400, ErrorKind.INPUT, id="400"),
        pytest.param(422, ErrorKind.INPUT, id="422"),
        pytest.param(401, ErrorKind.AUTH, id="401"),
        pytest.param(403, ErrorKind.ACCESS, id="403"),
        pytest.param(404, ErrorKind.NOT_FOUND, id="404"),
        pytest.param(429, ErrorKind.LIMIT, id="429"),
        pytest.param(500, ErrorKind.PORTAL, id="500"),
        pytest.param(502, ErrorKind.PORTAL, id="502"),
        pytest.param(200, ErrorKind.PORTAL, id="200"),
    ],
)
def test_unknown_codes_fall_to_their_status(status: int, kind: ErrorKind) -> None:
    """A code the table does not know gives the kind of its HTTP status."""
    assert kind_of_code("SOMETHING_NEW_EXCEPTION", status) is kind


def test_codes_match_in_any_letter_case() -> None:
    """A code sent upper-cased (EXPIRED_TOKEN) is the same code."""
    assert kind_of_code("EXPIRED_TOKEN", 400) is ErrorKind.AUTH


def test_classic_empty_code_reads_not_found_from_the_message() -> None:
    """The classic CRM methods' empty code with "Not found" is NOT_FOUND, else INPUT."""
    assert kind_of_code("", 400, "Not found") is ErrorKind.NOT_FOUND
    assert kind_of_code("", 400, "ID is not defined or invalid") is ErrorKind.INPUT


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        pytest.param(200, "ID is not defined or invalid.", ErrorKind.INPUT, id="bad-id-in-batch"),
        pytest.param(400, "ID is not defined or invalid.", ErrorKind.INPUT, id="bad-id-alone"),
        pytest.param(200, "Not found", ErrorKind.NOT_FOUND, id="not-found-in-batch"),
        pytest.param(400, "Not found", ErrorKind.NOT_FOUND, id="not-found-whole-request"),
        pytest.param(200, "Access denied.", ErrorKind.ACCESS, id="access-denied"),
        pytest.param(200, "The parameter 'fields' must be array.", ErrorKind.INPUT, id="fields"),
        pytest.param(200, "Something new.", ErrorKind.INPUT, id="unknown-in-batch"),
        pytest.param(403, "Something new.", ErrorKind.ACCESS, id="unknown-403"),
        pytest.param(500, "Something new.", ErrorKind.PORTAL, id="unknown-500"),
    ],
)
def test_an_empty_code_is_read_by_its_message_then_status(
    status: int, message: str, kind: ErrorKind
) -> None:
    """The empty code: known messages first; unknown ones by status (a command's 200 as 400)."""
    assert kind_of_code("", status, message) is kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(SdkError("bad"), ErrorKind.MISUSE, id="sdk"),
        pytest.param(SdkTypeError("bad"), ErrorKind.MISUSE, id="sdk-type"),
        pytest.param(TransportError("reset"), ErrorKind.TRANSPORT, id="transport"),
        pytest.param(DecodeError("html"), ErrorKind.DECODING, id="decode"),
        pytest.param(AuthError("x", code="NEW_AUTH_CODE", status=400), ErrorKind.AUTH, id="auth"),
        pytest.param(RateLimitError("x", code="QUERY_LIMIT_EXCEEDED", status=0), ErrorKind.LIMIT),
        pytest.param(OperatingLimitError("x", code="OTHER", status=0), ErrorKind.LIMIT, id="op"),
    ],
)
def test_each_error_class_has_its_kind(error: Exception, kind: ErrorKind) -> None:
    """The classes whose kind is fixed give it whatever their code."""
    assert error.kind is kind  # type: ignore[attr-defined]


def test_kind_survives_pickling() -> None:
    """An error sent to another process keeps its kind."""
    error = AjaxError("x", code=f"{V3}ENTITYNOTFOUNDEXCEPTION", status=400)
    assert pickle.loads(pickle.dumps(error)).kind is ErrorKind.NOT_FOUND


def test_a_missing_record_on_the_fake_portal_is_not_found() -> None:
    """The error a real answer carries for a missing task is NOT_FOUND."""
    with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        result = BatchV3(b24).make([("tasks.task.get", {"id": 999})])
    assert [error.kind for error in result.errors] == [ErrorKind.NOT_FOUND]


def test_a_bad_select_on_the_fake_portal_is_input() -> None:
    """An unknown select field, answered by the portal, is the caller's INPUT."""
    with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        task = portal.add_task(title="T")
        result = BatchV3(b24).make([("tasks.task.get", {"id": task, "select": ["nope"]})])
    assert [error.kind for error in result.errors] == [ErrorKind.INPUT]
