"""One writer per run folder: an exclusive ``flock`` on ``RUN/train.lock``.

A folder that holds nothing but ``train.lock`` counts as empty (a run that failed before
its first step leaves it).

The operating system releases a flock when its process ends in any way (``kill -9``
included), so a lock is never stale and the file is never deleted: deleting a lock file
lets a third process lock a new file while a second still waits on the old one. The
holder writes its process id into the file, so a refused second writer can name it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RunFolderBusy

LOCK_FILE = "train.lock"


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder's lock (the folder must exist);
    RunFolderBusy, at once, if another process holds it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunFolderBusy(
                f"run folder {self.path.parent} is in use by {who} (it holds {self.path}); "
                "one writer per run folder: wait for that run to end, or choose another folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (see the module docstring)
            self._fd = None


@contextmanager
def claim(run_dir: Path, resume: bool, is_main: bool) -> Iterator[None]:
    """Hold ``run_dir`` for one run: rank 0 checks it (empty, or with checkpoints when
    ``resume``) before creating anything, then locks it and checks again under the lock
    (a folder that already has a lock file is locked first, so a busy run folder is
    reported as busy). Other ranks only read and write nothing, so they take no lock."""
    if not is_main:
        yield
        return
    run_dir = Path(run_dir)
    if not (run_dir / LOCK_FILE).is_file():  # else a run folder: a busy one is named first
        _check_folder(run_dir, resume)
        run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        _check_folder(run_dir, resume)  # another run may have started in between
        yield


def _check_folder(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "checkpoints").is_dir():
            raise ValueError(f"--resume: no complete checkpoint in {str(run_dir)!r}")
    elif run_dir.exists() and (
        not run_dir.is_dir() or any(p.name != LOCK_FILE for p in run_dir.iterdir())
    ):
        raise ValueError(
            f"run folder {str(run_dir)!r} is not empty; pass --resume to continue that run, "
            "or choose a new folder"
        )
