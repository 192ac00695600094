"""Why a training run stops before its last step, each with its command's exit status.

``noisejump train`` prints the message as one line and exits with ``exit_code``; nothing
here is a bug, so none of them shows a traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingStopped(RuntimeError):
    """A run that stopped early, on purpose; ``exit_code`` is the command's exit status."""

    exit_code = 1


class Interrupted(TrainingStopped):
    """SIGINT or SIGTERM: the current step was finished and a checkpoint written. With
    ``last`` the step was the run's last and the summary and final samples are not
    written: ``--resume`` writes them.

    ``exit_code`` is 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell
    reports a process the signal ended.
    """

    def __init__(self, signum: int, step: int, saved: Path, run_dir: Path, last: bool = False):
        self.signum, self.step, self.saved, self.last = signum, step, saved, last
        self.exit_code = 128 + signum
        resume = f"`noisejump train {run_dir} --resume`"
        todo = (
            f"to write the summary and the final samples, run {resume}"
            if last
            else f"to continue, run {resume} (options not given keep the run's values)"
        )
        when = f"after step {step}, the last," if last else f"after step {step}"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} {when}; checkpoint {saved} is "
            f"written; {todo}"
        )


class Diverged(TrainingStopped):
    """The loss or the weights became non-finite: nothing after the last finite
    checkpoint was written, and that checkpoint was not pruned."""


class RunFolderBusy(TrainingStopped):
    """Another process holds the run folder's lock (one writer per run folder)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, read-only folder, serializer error);
    its temporary directory is removed and earlier checkpoints are untouched."""
