"""One writer per output folder: an advisory `fcntl.flock` on `<folder>/.sameface.lock`.

The kernel drops the lock when its holder exits, even on kill -9, so a stale lock file
never blocks a later run; the pid written in it only names the holder in the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError

LOCK_FILE = ".sameface.lock"


class FolderLock:
    """Hold the lock on an output folder for the duration of a `with` block.

    Also released when the object is garbage-collected, so `_lock = FolderLock(out).acquire()`
    in a command holds the folder until the command returns.

    Args:
        folder: the output folder (created if missing).
        what: what is writing there, for the message another run gets.
        lock_file: the lock file's name inside `folder`.

    Raises:
        OutputError: another live process holds the folder, or it cannot be created.
    """

    def __init__(
        self, folder: str | os.PathLike, what: str = "a sameface run", *, lock_file: str = LOCK_FILE
    ):
        self.folder = Path(folder)
        self.what = what
        self.lock_file = lock_file
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        path = self.folder / self.lock_file
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise OutputError(f"{self.folder}: cannot use as output ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "?"
            os.close(fd)
            raise OutputError(
                f"{self.folder}: in use by another run (pid {holder}); wait for it to finish "
                "or choose another folder"
            ) from None
        except OSError as e:
            os.close(fd)
            raise OutputError(f"{self.folder}: cannot lock ({e.strerror or e})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __del__(self) -> None:  # a lock held in a local is dropped with it
        self.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
