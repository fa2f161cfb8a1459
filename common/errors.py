"""The base class of every error a user can cause and fix: bad input, a missing file, a busy store.

Command lines (:func:`common.cli.run`) print such an error as one ``error: ...`` line and exit
with its ``exit_code`` (2 unless a subclass says otherwise); anything else is a bug and raises
with its traceback. Every exception carries what it is about (file, store, source id, key), so a
message in a log of a million files still says which one.
"""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """An error in what the user asked for or gave, not in the code; exit status :attr:`exit_code`.

    Picklable whatever a subclass's ``__init__`` takes (its message and attributes travel), so one
    raised in a child process (:func:`common.lifeline.call_in_child`) reaches the parent whole.
    """

    exit_code: int = 2

    def __reduce__(self):
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type, args: tuple, state: dict) -> "UserError":
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class LocationError(UserError, ValueError):
    """A location (path or URL) that cannot name a store, archive or file here."""


class MissingExtraError(UserError, ImportError):
    """A feature needs an optional dependency group that is not installed."""

    def __init__(self, what: str, module: str, extra: str):
        self.module, self.extra = module, extra
        verb = "are" if ", " in module else "is"
        super().__init__(f"{what} needs {module}, which {verb} not installed: pip install 'erosita-lcvae[{extra}]'")


#: errno values of a file system that refuses a write for want of space (a full disk, a quota).
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: How libraries that do not raise OSError (polars: ``ComputeError``) say the same.
NO_SPACE_WORDS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a file system refusing a write for want of space."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(words in str(exc) for words in NO_SPACE_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
