"""Progress reporting for the calls that run many batches: a caller's callback or a tqdm bar.

Shared by the chunker (commands done) and the list helpers (items fetched). Only reports: never
sends, sleeps or decides anything; tqdm is optional and imported only when asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from b24batch.errors import SdkTypeError

__all__ = ["Progress", "Report", "progress_report"]

log = logging.getLogger("b24batch")

Progress = bool | Callable[[int, int | None], object] | None
"""``True`` for a tqdm bar, a callable ``(done, total_or_None)``, or None."""

_tqdm_hint_given = False


class Report:
    """Told after every batch how many more units are done; closed at the end. A bar can also
    be given a note to show beside its count (a callback has nowhere to show one)."""

    def __init__(
        self,
        update: Callable[[int], object] | None = None,
        close: Callable[[], object] | None = None,
        note: Callable[[str], object] | None = None,
    ) -> None:
        self._update = update
        self._close = close
        self._note = note

    def __call__(self, done: int) -> None:
        if self._update is not None:
            self._update(done)

    def note(self, text: str) -> None:
        """Show ``text`` on the bar for the rest of the call (nothing without a bar)."""
        if self._note is not None:
            self._note(text)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def progress_report(progress: Progress, total: int | None, *, unit: str = "cmd") -> Report:
    """The reporter for ``progress``: nothing, the caller's callback, or a tqdm bar.

    Args:
        progress: None or False for nothing, a callable given ``(done, total)`` with the
            running count after every batch, or True for a tqdm bar.
        total: The count expected in the end, or None when it is not known.
        unit: The bar's unit (``"cmd"``, ``"item"``).

    Raises:
        SdkTypeError: ``progress`` is none of these.
    """
    if progress is None or progress is False:
        return Report()
    if callable(progress):
        callback = progress
        counter = [0]

        def report(done: int) -> None:
            counter[0] += done
            callback(counter[0], total)

        return Report(report)
    if progress is not True:
        raise SdkTypeError(f"progress={progress!r}: pass True, a callable (done, total), or None")
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        global _tqdm_hint_given
        if not _tqdm_hint_given:
            _tqdm_hint_given = True
            log.warning(
                "progress=True needs tqdm: pip install 'b24batch[progress]' "
                "(running without a progress bar)"
            )
        return Report()
    bar = tqdm(total=total, unit=unit, desc="b24batch")
    return Report(bar.update, bar.close, lambda text: bar.set_description(f"b24batch ({text})"))
