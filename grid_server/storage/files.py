"""Files that hold secrets or the grid's data: created 0600, never through a symlink.

``O_EXCL`` makes creation fail rather than reuse a file someone placed there
first (a pre-made file could be readable by them, or a symlink to another
file); ``O_NOFOLLOW`` refuses a symlink where the file should be. A secret
read back must still be private: a file readable by group or others is
refused, naming the file and its mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class PrivateFileError(OSError):
    """A secret file that may not be used as it is (the message says why and what to do)."""


def create_private(path: Path, text: str | None = None) -> None:
    """Create ``path`` with mode 0600 (FileExistsError if anything is there), holding ``text``."""
    fd = os.open(path, _CREATE, 0o600)
    with os.fdopen(fd, "w") as fh:
        if text is not None:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def ensure_private(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless something is already there."""
    with contextlib.suppress(FileExistsError):
        create_private(path)


def read_private(path: Path) -> str:
    """The text of a secret file that only its owner can read (not a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise PrivateFileError(f"{path} is a symbolic link; put the file itself there") from exc
        raise
    with os.fdopen(fd) as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(f"{path} is not a regular file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PrivateFileError(
                f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
            )
        return fh.read()
