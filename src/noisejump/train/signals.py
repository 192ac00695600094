"""SIGINT and SIGTERM end a run cleanly: finish the current step, write a checkpoint.

``with StopRequest() as stop:`` replaces the two handlers (in the main thread; elsewhere
Python cannot, and a signal acts as it would without noisejump). The first signal sets
``stop.signum``; the loop agrees on it across ranks, finishes its step, checkpoints and
raises ``Interrupted``. A second signal of the same kind acts at once (the previous
handler: KeyboardInterrupt for SIGINT, termination for SIGTERM), so pressing Ctrl-C twice
still stops a run that is stuck. torchrun forwards a SIGINT to its workers as SIGTERM,
which therefore does not count as the second signal.

After the last step's checkpoint nothing is left to finish: within ``stop.at_once(...)``
(the summary and the final samples) a signal raises at once, and one received before
raises on entry, so a run never acknowledges a signal and then carries on.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._stopped: Callable[[int], BaseException] | None = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @contextmanager
    def at_once(self, stopped: Callable[[int], BaseException]) -> Iterator[None]:
        """Within: the first signal raises ``stopped(signum)`` where the code is (as
        Ctrl-C raises KeyboardInterrupt); a signal already received raises on entry."""
        if self.signum is not None:
            raise stopped(self.signum)
        self._stopped = stopped
        try:
            yield
        finally:
            self._stopped = None

    def _handle(self, signum: int, frame) -> None:
        signal.signal(signum, self._previous[signum])  # type: ignore[arg-type]
        if self.signum is None:
            self.signum = signum
            if self._stopped is not None:
                raise self._stopped(signum)
            print(
                f"\nnoisejump train: {signal.Signals(signum).name} received: finishing this "
                "step and writing a checkpoint (send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
