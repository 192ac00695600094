"""Test hooks: stop a training process at a named point, so tests reach each one cheaply.

Only the test suite sets these variables; unset (always, in real runs) they cost one
dictionary look-up per checkpoint write point and per step.

    NOISEJUMP_TEST_KILL_AT="POINT@STEP"         SIGKILL at POINT of checkpoint STEP
                                                (``checkpoint.KILL_POINTS``)
    NOISEJUMP_TEST_SIGNAL_AT="NAME@STEP[/RANK]" the process sends itself signal NAME
                                                (SIGINT, SIGTERM) during step STEP, after
                                                its update (on rank RANK only, if given)

Tests that inject an error instead of a kill replace ``reached`` (monkeypatch).
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "NOISEJUMP_TEST_KILL_AT"
SIGNAL_ENV = "NOISEJUMP_TEST_SIGNAL_AT"


def reached(point: str, step: int) -> None:
    """Checkpoint ``step`` has reached write point ``point``."""
    if os.environ.get(KILL_ENV) == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def in_step(step: int, rank: int) -> None:
    """Step ``step`` (1-based) has applied its update on rank ``rank``."""
    spec = os.environ.get(SIGNAL_ENV)
    if not spec:
        return
    name, _, where = spec.partition("@")
    at, _, only_rank = where.partition("/")
    if int(at) == step and (not only_rank or int(only_rank) == rank):
        os.kill(os.getpid(), signal.Signals[name])
