"""``BatchByChunkV3`` and ``BatchByChunkV2``: any number of commands, sent in chunks of up to 50.

Faces only: signatures, docstrings, examples. Each checks its options once and hands the call
to the engine's chunk runner (``_engine/chunked.py``) with its protocol.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, overload

from b24batch._engine import chunked
from b24batch._engine.call_options import CallOptions
from b24batch._engine.port import Face
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.commands import MAX_COMMANDS, refuse_single_row
from b24batch.progress import Progress
from b24batch.results import BatchResult, ChunkedResult

__all__ = ["BatchByChunkV2", "BatchByChunkV3", "Progress"]

T = TypeVar("T")
K = TypeVar("K", bound=int | str)
"""A classic command's name: a str, or an int such as a record id."""


class BatchByChunkV3(Face):
    """Runs any number of commands as consecutive batches of at most ``chunk_size``.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     calls = [("tasks.task.add", {"fields": {"title": f"T{n}"}}) for n in range(120)]
        ...     result = BatchByChunkV3(b24).make(calls)
        ...     len(result.data), [len(chunk.positions) for chunk in result.chunks]
        (120, [50, 50, 20])
    """

    @overload
    def make(
        self,
        calls: Mapping[str, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[dict[str, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[list[T]]: ...

    @overload
    def make(
        self,
        calls: object,
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        idempotency_key: str | bool | None = None,
        isolate_errors: bool = False,
        max_in_flight: int | Literal["auto"] = "auto",
        journal: str | os.PathLike[str] | None = None,
        in_doubt: Literal["report", "resend"] = "report",
        raise_errors: bool | None = None,
    ) -> ChunkedResult[Any]:
        """Send all of ``calls``, ``chunk_size`` at a time, and merge the results.

        Every row is checked and every chunk planned and encoded before the first request.

        Args:
            calls: A list (or any iterable) of rows, or a dict of named rows, in the forms
                [`BatchV3.make`][b24batch.BatchV3.make] takes; any number of them. Positional
                references (``"3.item.id"``) are refused: use ``as`` and [`ref`][b24batch.ref].
            chunk_size: Commands per batch, 1 to 50. A command is kept in the same batch as the
                alias it references, so a chunk can end early.
            halt_on_error: True stops after the first failed chunk and lists the commands of
                the chunks not sent in ``not_executed``; False sends every chunk. Within a
                chunk the portal always stops at the first failing command, without rollback:
                the writes before it may have run (``maybe_executed``).
            result_type: As in [`BatchV3.make`][b24batch.BatchV3.make].
            request_id: Base id; chunk ``k`` is sent as ``{request_id}.{k}``. A new uuid4 when
                None.
            progress: True for a tqdm progress bar (``pip install 'b24batch[progress]'``), or a
                callable given ``(done_commands, total)`` after every chunk.
            idempotency_key: A base key (chunk ``k`` sends ``{key}.{k}``) or True for a
                generated one; see [`BatchV3.make`][b24batch.BatchV3.make].
            isolate_errors: As in [`BatchV3.make`][b24batch.BatchV3.make], for each failed chunk:
                one [`ChunkError`][b24batch.ChunkError] per failing command. Every command must only
                read.
            journal: A file (str or ``os.PathLike``) that keeps every chunk's outcome, so that
                the same call run again after a crash, a Ctrl+C or a failed chunk continues
                where it stopped: answered chunks are read back, not sent. See "Jobs that
                resume" in the docs. A second run on the same file at once is refused.
            in_doubt: What a resumed job does with a chunk an earlier run sent without a
                recorded answer: ``"report"`` sends it again only when that is safe (read-only,
                or an idempotency key and no write before its last command) and otherwise lists
                its writes in ``maybe_executed``; ``"resend"`` sends it again (check the portal
                first).
            raise_errors: True raises the first chunk error once the call is done
                (``raise_for_errors()``: the others on ``error.others``, the result on
                ``error.partial``) instead of returning it; None takes the client's.

        Returns:
            A [`ChunkedResult`][b24batch.ChunkedResult]; chunk errors are returned in
            ``errors``, not raised, unless ``raise_errors`` (docs/errors.md, "Returned or
            raised").

        Raises:
            SdkError: Bad input or options, found before anything is sent.
            B24Error: What a chunk raised (as [`BatchV3.make`][b24batch.BatchV3.make]), with the
                chunks before it in ``error.partial``.
        """
        options = CallOptions.checked(
            V3,
            chunk_size=chunk_size,
            halt_on_error=halt_on_error,
            request_id=request_id,
            idempotency_key=idempotency_key,
            result_type=result_type,
            isolate_errors=isolate_errors,
            max_in_flight=max_in_flight,
            journal=journal,
            in_doubt=in_doubt,
            raise_errors=raise_errors,
        )
        refuse_single_row(calls)
        return chunked.make(self._client, V3, calls, options, progress)

    @overload
    def iter(
        self,
        calls: Mapping[str, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[dict[str, T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[list[T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[Any]]: ...

    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        idempotency_key: str | bool | None = None,
        isolate_errors: bool = False,
        max_in_flight: int | Literal["auto"] = "auto",
        journal: str | os.PathLike[str] | None = None,
        in_doubt: Literal["report", "resend"] = "report",
        raise_errors: bool | None = None,
    ) -> Iterator[BatchResult[Any]]:
        """Yield one [`BatchResult`][b24batch.BatchResult] per chunk as it arrives, reading
        ``calls`` lazily.

        Takes any iterable, a generator included, and reads at most two chunks ahead of what
        it has sent, so memory stays flat however many commands there are. Each row is checked
        as it is read: a bad row raises [`SdkError`][b24batch.SdkError] when its chunk is planned,
        after the chunks before it were yielded. With ``halt_on_error`` iteration stops after the
        first failed chunk (which is yielded). Arguments as for
        [`make`][b24batch.BatchByChunkV3.make]; with ``raise_errors`` the first chunk with an
        error is raised instead of yielded (its result on ``error.result``, what landed
        meanwhile on ``error.partial``).

        Examples:
            >>> from b24batch.testing import FakePortal
            >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
            ...     _ = portal.add_tasks(120)
            ...     rows = (("tasks.task.get", {"id": i}) for i in range(1, 121))
            ...     [len(chunk.data) for chunk in BatchByChunkV3(b24).iter(rows)]
            [50, 50, 20]
        """
        options = CallOptions.checked(
            V3,
            chunk_size=chunk_size,
            halt_on_error=halt_on_error,
            request_id=request_id,
            idempotency_key=idempotency_key,
            result_type=result_type,
            isolate_errors=isolate_errors,
            max_in_flight=max_in_flight,
            journal=journal,
            in_doubt=in_doubt,
            raise_errors=raise_errors,
        )
        refuse_single_row(calls)
        return chunked.iterate(self._client, V3, calls, options, progress)


class BatchByChunkV2(Face):
    """Runs any number of classic commands as consecutive batches of at most ``chunk_size``.

    Every command is sent under its global key — your name, else its ``as``, else its position
    in the whole input — so ``$result[KEY]`` references mean the same in every chunk, and a
    command is kept in the same chunk as the commands it references.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     calls = [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(120)]
        ...     result = BatchByChunkV2(b24).make(calls)
        ...     result.data[:3], [len(chunk.positions) for chunk in result.chunks]
        ([1, 2, 3], [50, 50, 20])
    """

    @overload
    def make(
        self,
        calls: Mapping[K, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[dict[K, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[list[T]]: ...

    @overload
    def make(
        self,
        calls: object,
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> ChunkedResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        max_in_flight: int | Literal["auto"] = "auto",
        journal: str | os.PathLike[str] | None = None,
        in_doubt: Literal["report", "resend"] = "report",
        raise_errors: bool | None = None,
    ) -> ChunkedResult[Any]:
        """Send all of ``calls``, ``chunk_size`` at a time, and merge the results.

        Every row is checked and every chunk planned and encoded before the first request.

        Args:
            calls: A list (or any iterable) of rows, or a dict of named rows (str or int
                names, such as record ids), in the forms [`BatchV2.make`][b24batch.BatchV2.make]
                takes; any number of them.
            chunk_size: Commands per batch, 1 to 50. A command is kept in the same batch as
                the commands it references, so a chunk can end early.
            halt_on_error: Each chunk is sent with ``halt=1``, and the first failed command
                stops the call: the commands after it, in its chunk and in the chunks not
                sent, are in ``not_executed``. False runs every command of every chunk.
            result_type: As in [`BatchV2.make`][b24batch.BatchV2.make].
            request_id: Base id; chunk ``k`` is sent as ``{request_id}.{k}``.
            progress: True for a tqdm progress bar, or a callable ``(done_commands, total)``.
            journal: As in [`BatchByChunkV3.make`][b24batch.BatchByChunkV3.make].
            in_doubt: As in [`BatchByChunkV3.make`][b24batch.BatchByChunkV3.make].
            raise_errors: As in [`BatchByChunkV3.make`][b24batch.BatchByChunkV3.make].

        Returns:
            A [`ChunkedResult`][b24batch.ChunkedResult]: one [`ChunkError`][b24batch.ChunkError] per
            failed command, with its global key; results of every command that succeeded, in call
            order (None where a command has none) or by name.

        Raises:
            SdkError: Bad input or options, found before anything is sent.
            B24Error: What a chunk raised, with the chunks before it in ``error.partial``.
        """
        options = CallOptions.checked(
            V2,
            chunk_size=chunk_size,
            halt_on_error=halt_on_error,
            request_id=request_id,
            result_type=result_type,
            max_in_flight=max_in_flight,
            journal=journal,
            in_doubt=in_doubt,
            raise_errors=raise_errors,
        )
        refuse_single_row(calls)
        return chunked.make(self._client, V2, calls, options, progress)

    @overload
    def iter(
        self,
        calls: Mapping[K, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[dict[K, T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[list[T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        max_in_flight: int | Literal["auto"] = ...,
        journal: str | os.PathLike[str] | None = ...,
        in_doubt: Literal["report", "resend"] = ...,
        raise_errors: bool | None = ...,
    ) -> Iterator[BatchResult[Any]]: ...

    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        max_in_flight: int | Literal["auto"] = "auto",
        journal: str | os.PathLike[str] | None = None,
        in_doubt: Literal["report", "resend"] = "report",
        raise_errors: bool | None = None,
    ) -> Iterator[BatchResult[Any]]:
        """Yield one [`BatchResult`][b24batch.BatchResult] per chunk as it arrives, reading
        ``calls`` lazily.

        As [`BatchByChunkV3.iter`][b24batch.BatchByChunkV3.iter]; arguments as for
        [`make`][b24batch.BatchByChunkV2.make]. With ``halt_on_error`` iteration stops after the
        chunk with the first failed command.
        """
        options = CallOptions.checked(
            V2,
            chunk_size=chunk_size,
            halt_on_error=halt_on_error,
            request_id=request_id,
            result_type=result_type,
            max_in_flight=max_in_flight,
            journal=journal,
            in_doubt=in_doubt,
            raise_errors=raise_errors,
        )
        refuse_single_row(calls)
        return chunked.iterate(self._client, V2, calls, options, progress)
