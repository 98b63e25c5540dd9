"""FakePortal: a loopback HTTP server that answers the Bitrix24 ``batch`` methods.

The portal object itself: its options, lifecycle, credentials and test-facing API (seeding,
handlers, faults, records), and the routing and authentication of each request. The HTTP layer
is ``server.py``; the routes after it are ``v3_route.py`` and ``v2_route.py``, the limits
``limits.py``; commands run in ``v3_store.py`` and ``v2_batch.py``. Meant for tests and demos; it
binds to loopback and must never face a network.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal

from b24batch.redaction import redact
from b24batch.testing.command_error import CommandError
from b24batch.testing.faults import Fault
from b24batch.testing.limits import LeakyBucket, OperatingMeter, OperatingTime
from b24batch.testing.messages import (
    EXPIRED,
    INVALID_TOKEN,
    NO_AUTH,
    RecordedRequest,
    Reply,
    classic_error,
)
from b24batch.testing.oauth_server import FakeAuthServer, check_member_id
from b24batch.testing.seeding import BulkSeeding
from b24batch.testing.server import LoopbackService, check_http_options
from b24batch.testing.v2_route import ClassicRoute
from b24batch.testing.v2_store import PAGE_SIZE, CrmSeeding, CrmStore
from b24batch.testing.v3_route import IDEMPOTENCY_TTL, StoredReply, V3Route
from b24batch.testing.v3_store import Handler, TaskStore, validate_fields

__all__ = [
    "DEFAULT_COMMAND_COST",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_RECORDED",
    "IDEMPOTENCY_TTL",
    "FakePortal",
    "Fault",
    "RecordedRequest",
]

DEFAULT_COMMAND_COST: Final = 0.01
"""Seconds of operating time charged per executed command."""
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
"""The largest request body accepted; a larger one is answered 413 ``REQUEST_ENTITY_TOO_LARGE``."""
DEFAULT_IDLE_TIMEOUT: Final = 30.0
"""Seconds a connection may stay silent (between requests, or mid-request) before it is closed."""
DEFAULT_MAX_RECORDED: Final = 1000
"""How many requests ``FakePortal.requests`` keeps; older ones are dropped first."""

_WEBHOOK_BATCH: Final = re.compile(r"/rest/api/([^/]+)/([^/]+)/batch")
_CLASSIC_BATCH: Final = re.compile(r"/rest/(?!api/)(?:([^/]+)/([^/]+)/)?batch(?:\.json)?")
_CLASSIC_METHOD: Final = re.compile(
    r"/rest/(?!api/)(?:([^/]+)/([^/]+)/)?([A-Za-z0-9_.]+?)(?:\.json)?"
)
_V3_METHOD: Final = re.compile(r"/rest/api/(?:([^/]+)/([^/]+)/)?([A-Za-z0-9_.]+)")


class FakePortal(LoopbackService, V3Route, ClassicRoute, OperatingTime, CrmSeeding, BulkSeeding):
    """A Bitrix24 portal on loopback that serves the REST 3.0 ``batch`` method over real HTTP.

    Each method it knows is served on its own URL too, as a single call (protocol §10):
    ``/rest/api/USER/SECRET/METHOD`` (OAuth: ``/rest/api/METHOD``) and, classic,
    ``/rest/USER/SECRET/METHOD`` (OAuth: ``/rest/METHOD``, the token as ``auth``). It serves
    the classic (v2) ``batch`` too, on ``/rest/USER/SECRET/batch`` and (OAuth, the token as
    ``auth`` in the body) ``/rest/batch``, over an in-memory CRM (``crm.deal.*``,
    ``crm.contact.*``, ``user.current``) and the same tasks in their classic shapes
    (``tasks.task.*``), with the same credentials, limits and faults. With ``auth_server=`` it
    accepts the tokens a [`FakeAuthServer`][b24batch.testing.FakeAuthServer] issued.

    Keeps tasks in memory (``tasks.task.add/get/list/update/delete``), accepts webhook and OAuth
    credentials, honours ``Idempotency-Key``, optionally enforces the request-rate and
    operating-time limits, and records every request. Faults make it misbehave on demand.

    Args:
        user_id: The webhook's user id; also the default creator and assignee of new tasks.
        secret: The webhook secret (random when omitted).
        access_token: The first valid OAuth token (random when omitted).
        rate_limit: ``(burst, per_second)`` to enforce the leaky bucket, or None.
        operating_limit: Seconds of operating time per method over the 10-minute window past
            which batches are refused with 429, or None.
        command_cost: Seconds of operating time charged per command run.
        operating_charge: Whom commands are charged to: ``"batch"`` (the default, as measured
            on a cloud portal: the whole batch is charged to the method ``batch`` and the inner
            methods read 0) or ``"method"`` (as the docs say: each command to its own method).
            ``time.operating`` reports the figure the batch was charged to (with ``"method"``,
            the highest of its methods), and the limit applies to it.
        clock: Monotonic seconds, for the limiters.
        wall_clock: Unix seconds, for ``time``, task dates and idempotency expiry.
        host: Loopback interface to bind: an address in 127.0.0.0/8, ``::1`` or
            ``localhost``; any other raises ValueError.
        port: Port to bind; 0 picks a free one (kept across stop/start).
        max_body_bytes: The largest request body accepted. A larger one (by its
            Content-Length, or as its chunks add up) is answered 413 with the JSON envelope
            ``REQUEST_ENTITY_TOO_LARGE`` and the connection closed, without being recorded.
        idle_timeout: Seconds a connection may stay silent, between requests or in the middle
            of one, before the portal closes it without an answer.
        max_recorded: How many requests ``requests`` keeps (0 keeps none); the oldest go first.
        list_page_size: How many items a list page holds, on both routes. An int clamps every
            page silently (``tasks.task.list``'s ``pagination.limit``; the classic lists' 50).
            A callable is called before each list command as ``list_page_size(method,
            asked)`` (the lower-case method name, e.g. ``"crm.deal.list"``, and the page size
            the command asked for: its ``pagination.limit``, 50 on classic) and that page holds
            at most the int >= 1 it returns, even more than asked: short pages at random, a
            clamp that changes mid-walk, pages larger than asked. It runs under the portal's
            lock; any other answer fails that command with ``INTERNAL_SERVER_ERROR``.
        latency: Seconds every request waits before it is processed (outside the portal's
            lock, so concurrent requests wait side by side), as a distant portal would.
        auth_server: A [`FakeAuthServer`][b24batch.testing.FakeAuthServer] the application is
            installed through: the portal also accepts the Bearer tokens it issued for this
            portal (401 ``expired_token`` past their lifetime, ``invalid_token`` once a refresh
            replaced them). ``access_token``, ``expire_token()`` and ``refresh_token()`` keep
            working beside it.
        member_id: The portal's ``member_id`` (random 32 hex digits when omitted).

    Malformed requests (broken chunked framing, a bad Content-Length, JSON nested too deep)
    are answered with the portal's error envelopes, 400 ``INVALID_REQUEST`` or
    ``INVALIDJSONEXCEPTION``; the portal keeps serving.

    For example, a request of your own, as an OAuth application would send it:

    ```python
    with FakePortal() as portal:
        requests.post(
            portal.oauth_endpoint + "api/batch",
            json=[{"method": "tasks.task.list", "query": {}}],
            headers={"Authorization": f"Bearer {portal.access_token}"},
        )
    ```
    """

    CommandError: ClassVar[type[CommandError]] = CommandError

    def __init__(
        self,
        *,
        user_id: int = 1,
        secret: str | None = None,
        access_token: str | None = None,
        rate_limit: tuple[float, float] | None = None,
        operating_limit: float | None = None,
        command_cost: float = DEFAULT_COMMAND_COST,
        operating_charge: Literal["batch", "method"] = "batch",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_recorded: int = DEFAULT_MAX_RECORDED,
        list_page_size: int | Callable[[str, int], int] = PAGE_SIZE,
        latency: float = 0.0,
        auth_server: FakeAuthServer | None = None,
        member_id: str | None = None,
    ) -> None:
        if not callable(list_page_size) and (
            isinstance(list_page_size, bool)
            or not isinstance(list_page_size, int)
            or list_page_size < 1
        ):
            raise ValueError(
                f"list_page_size must be an int >= 1 or a callable, got {list_page_size!r}"
            )
        if (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or not (0 <= latency < float("inf"))
        ):
            raise ValueError(f"latency must be a number of seconds >= 0, got {latency!r}")
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
            raise ValueError(f"user_id must be a positive int, got {user_id!r}")
        secret = secrets.token_hex(8) if secret is None else secret
        if not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
            raise ValueError("secret must be a non-empty string of letters, digits, '_' or '-'")
        if rate_limit is not None and (len(rate_limit) != 2 or min(rate_limit) <= 0):
            raise ValueError(f"rate_limit must be (burst, per_second) > 0, got {rate_limit!r}")
        if operating_limit is not None and operating_limit <= 0:
            raise ValueError(f"operating_limit must be > 0 seconds, got {operating_limit!r}")
        if command_cost < 0:
            raise ValueError(f"command_cost must be >= 0, got {command_cost!r}")
        if operating_charge not in ("batch", "method"):
            raise ValueError(
                f"operating_charge must be 'batch' or 'method', got {operating_charge!r}"
            )
        if auth_server is not None and not isinstance(auth_server, FakeAuthServer):
            raise TypeError(f"auth_server must be a FakeAuthServer, got {auth_server!r}")
        self._member_id = check_member_id(member_id)
        self._user_id = user_id
        self._secret = secret
        self._rate_limit = rate_limit
        self._operating_limit = operating_limit
        self._command_cost = command_cost
        self._operating_charge = operating_charge
        self._clock = clock
        self._wall_clock = wall_clock
        self._host = host
        self._port = port
        check_http_options(host, max_body_bytes, idle_timeout, max_recorded)
        self._max_body_bytes = max_body_bytes
        self._idle_timeout = idle_timeout

        # Reentrant: a handler or a before_command hook runs under it and may seed or delete.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._latency = float(latency)
        self._store = TaskStore(user_id=user_id, page_size=list_page_size)
        self._crm = CrmStore(user_id=user_id, page_size=list_page_size)
        self._handlers: dict[str, Handler] = {}
        self._hooks: list[Callable[[str], object]] = []
        self._access_token = access_token or secrets.token_hex(32)
        # token -> still valid; a False token answers expired_token.
        self._tokens: dict[str, bool] = {self._access_token: True}
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._faults: deque[tuple[Fault, int]] = deque()
        self._bucket = LeakyBucket(*rate_limit, clock) if rate_limit else None
        self._meter = OperatingMeter(clock)
        self._idempotent: dict[tuple[str, str], StoredReply] = {}
        self._executed = 0
        self._active = 0
        self._peak = 0
        self._auth_server = auth_server
        if auth_server is not None:
            auth_server._register(self)

    def __repr__(self) -> str:
        state = f"http://{self._host}:{self._port}" if self.running else "stopped"
        return f"<FakePortal {state} user_id={self._user_id} secret=***>"

    # -- addresses and credentials ---------------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        """The webhook in its classic form ``http://HOST:PORT/rest/USER/SECRET/`` (no ``api/``)."""
        return f"{self.base_url}/rest/{self._user_id}/{self._secret}/"

    @property
    def oauth_endpoint(self) -> str:
        """The OAuth client endpoint ``http://HOST:PORT/rest/``."""
        return f"{self.base_url}/rest/"

    @property
    def user_id(self) -> int:
        """The webhook's user id (``user_id=``, default 1)."""
        return self._user_id

    @property
    def member_id(self) -> str:
        """The portal's ``member_id``: how an application installed on many portals keys them."""
        return self._member_id

    @property
    def auth_server(self) -> FakeAuthServer | None:
        """The [`FakeAuthServer`][b24batch.testing.FakeAuthServer] this portal accepts tokens from.

        None unless the portal was made with ``auth_server=``.
        """
        return self._auth_server

    @property
    def secret(self) -> str:
        """The webhook's secret (``secret=``, or a random one made at construction)."""
        return self._secret

    @property
    def access_token(self) -> str:
        """The currently valid (or, after ``expire_token()``, expired) OAuth access token."""
        with self._lock:
            return self._access_token

    def expire_token(self) -> None:
        """Make the current access token answer 401 ``expired_token``."""
        with self._lock:
            self._tokens[self._access_token] = False

    def refresh_token(self) -> str:
        """Issue and return a new valid access token; every older token now answers expired."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = False
            self._access_token = secrets.token_hex(32)
            self._tokens[self._access_token] = True
            return self._access_token

    # -- data, methods, faults, records -----------------------------------------------------------

    def add_task(self, **fields: Any) -> int:
        """Seed a task directly (no request is recorded, nothing is counted); returns its id.

        Accepts the writable task fields, plus ``id`` to choose the id.

        Raises:
            ValueError: A field is unknown, read-only, of the wrong type, or ``id`` is taken.
        """
        task_id = fields.pop("id", None)
        if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int)):
            raise ValueError(f"id must be an int, got {task_id!r}")
        fields.setdefault("title", "Task")
        try:
            values = validate_fields(fields)
        except CommandError as exc:
            raise ValueError(f"{exc.message}: {exc.validation or exc.code}") from exc
        with self._lock:
            return self._store.create(values, now=self._wall_clock(), task_id=task_id)

    @property
    def tasks(self) -> dict[int, dict[str, Any]]:
        """A deep-copied snapshot of the store: task id -> task fields."""
        with self._lock:
            return self._store.copy_tasks()

    def register(self, method: str, handler: Handler) -> None:
        """Serve ``method`` (case-insensitive) with ``handler``; replaces a built-in of that name.

        The handler receives the command's query (references already substituted) and returns
        its result entry, any JSON value (``{"item": ...}`` and ``{"items": [...]}`` become
        referenceable). Raise ``FakePortal.CommandError`` to fail the batch with that error;
        any other exception answers 500 ``INTERNAL_SERVER_ERROR``. Either way the batch stops
        at that row, and what the rows before it wrote stays, as on a real portal.

        The same handler serves the classic batch: there it receives the decoded params (every
        scalar a string, as PHP's ``parse_str`` gives them), its return value is the command's
        ``result`` (or a ``testing.ClassicAnswer`` with ``total`` and ``next``), and a
        ``CommandError`` or any other exception fails only that command, in ``result_error``.
        """
        if not isinstance(method, str) or not method or method.lower() == "batch":
            raise ValueError(f"cannot register method {method!r}")
        if not callable(handler):
            raise TypeError("handler must be callable")
        with self._lock:
            self._handlers[method.lower()] = handler

    def before_command(self, hook: Callable[[str], object]) -> None:
        """Call ``hook(method)`` (the lower-case method name) just before each command runs.

        On both routes, for every command that runs, between the commands of a batch too, under
        the portal's lock: the hook may call the seeding helpers (``add_task``, ``add_tasks``,
        ``delete_task``, ``add_deal``, ``delete_deal``) to change the data mid-walk, as other
        users of a real portal do. An exception from the hook fails that command.

        For example, a task added while a list is being walked:

        ```python
        portal.before_command(lambda method: portal.add_task(title="late"))
        ```
        """
        if not callable(hook):
            raise TypeError("hook must be callable")
        with self._lock:
            self._hooks.append(hook)

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests, after any faults already queued."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, got {times!r}")
        with self._lock:
            self._faults.append((fault, times))

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent ``max_recorded`` requests, in arrival order (a copy).

        Requests refused for their framing (malformed, or over ``max_body_bytes``) are not
        recorded.
        """
        with self._lock:
            return list(self._requests)

    @property
    def executed_commands(self) -> int:
        """Commands that ran and succeeded, also those before a batch's failing row.

        Replays add none; a failing command adds none (it did not execute).
        """
        with self._lock:
            return self._executed

    @property
    def peak_concurrency(self) -> int:
        """The most requests the portal was handling at once since it started or ``reset()``,
        from receiving one to answering it (its faults' delays included)."""
        with self._lock:
            return self._peak

    def reset(self) -> None:
        """Clear tasks, recordings, queued faults, limiter state and stored idempotent replies.

        Registered handlers and credentials are kept.
        """
        with self._lock:
            self._store.clear()
            self._crm.clear()
            self._requests.clear()
            self._faults.clear()
            if self._bucket is not None:
                self._bucket.reset()
            self._meter.reset()
            self._idempotent.clear()
            self._executed = 0
            self._peak = self._active

    # -- request processing (called from server threads) ------------------------------------------

    def _receive(self, request: RecordedRequest) -> Fault | None:
        """Record ``request`` and take the next queued fault, if any."""
        with self._lock:
            self._requests.append(request)
            self._active += 1
            self._peak = max(self._peak, self._active)
            if not self._faults:
                return None
            fault, times = self._faults.popleft()
            if times > 1:
                self._faults.appendleft((fault, times - 1))
            return fault

    def _answered(self) -> None:
        """A request received by ``_receive`` has its answer (or was dropped)."""
        with self._lock:
            self._active -= 1

    def _redact(self, path: str) -> str:
        """Mask the secret segment of a webhook path, the portal's own or a wrong one."""
        return redact(path, (self._secret,))

    def _process(self, request: RecordedRequest) -> Reply:
        classic = _CLASSIC_BATCH.fullmatch(request.path)
        if classic is not None:
            return self._classic_batch(request, *classic.groups())
        single = _CLASSIC_METHOD.fullmatch(request.path)
        if single is not None:
            return self._classic_method(request, *single.groups())
        webhook = _WEBHOOK_BATCH.fullmatch(request.path)
        method = None
        if webhook is None and request.path != "/rest/api/batch":
            single = _V3_METHOD.fullmatch(request.path)
            if single is None:
                return Reply.of(404, classic_error("ERROR_METHOD_NOT_FOUND", "Method not found!"))
            user, _, method = single.groups()
            webhook = single if user is not None else None
        if request.method != "POST":
            return Reply.of(
                405,
                classic_error("INVALID_REQUEST", "The batch method accepts POST only"),
                ("Allow", "POST"),
            )
        if webhook is not None:
            credential, refusal = self._webhook_auth(*webhook.groups()[:2])
        else:
            credential, refusal = self._oauth_auth(request.headers.get("Authorization", ""))
        if refusal is not None:
            return refusal
        with self._lock:
            return self._run(request, credential, method)

    def _webhook_auth(self, user: str, secret: str) -> tuple[str, Reply | None]:
        ok = user == str(self._user_id) and hmac.compare_digest(
            secret.encode("utf-8"), self._secret.encode("utf-8")
        )
        return f"webhook:{user}", None if ok else Reply.of(401, NO_AUTH)

    def _oauth_auth(self, authorization: str) -> tuple[str, Reply | None]:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if self._auth_server is not None and token:
            # Outside the portal's lock: the auth server has its own.
            check = self._auth_server.check_token(token, self._member_id)
            if check != "unknown":
                refusal = {"valid": None, "expired": EXPIRED, "revoked": INVALID_TOKEN}[check]
                return "oauth", None if refusal is None else Reply.of(401, refusal)
        with self._lock:
            valid = self._tokens.get(token) if token else None
        if valid is None:
            return "oauth", Reply.of(401, NO_AUTH)
        # One application per portal: its idempotency store survives a token refresh.
        return "oauth", None if valid else Reply.of(401, EXPIRED)

    def _before(self, method: str) -> None:
        self._charge(method)
        for hook in self._hooks:
            hook(method)
