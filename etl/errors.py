"""Typed exceptions of the ETL layer.

Every exception carries the file or store it is about, so that a message in a log of a
million files still says which one.
"""

from __future__ import annotations

from common.errors import UserError


class EtlError(UserError):
    """Base class of every error raised by :mod:`etl` (a user error: exit status 2 on the command line)."""


class InvalidLightCurveError(EtlError):
    """A light-curve file cannot be ingested; it is quarantined in the catalog.

    Parameters
    ----------
    file : str
        Path or URL of the offending file.
    code : str
        Short machine-readable reason (``not_fits``, ``missing_columns``, ...); see
        :data:`etl.reader.REJECT_CODES`.
    detail : str
        Human-readable detail.
    source_id : str, optional
        Source id when it could be read before the problem was found.
    """

    def __init__(self, file: str, code: str, detail: str, source_id: str | None = None):
        self.file = str(file)
        self.code = code
        self.detail = detail
        self.source_id = source_id
        super().__init__(f"{self.file}: {code}: {detail}")

    @property
    def reason(self) -> str:
        """The catalog's ``reason`` text: ``"code: detail"``."""
        return f"{self.code}: {self.detail}"


class StoreError(EtlError):
    """A store cannot be opened, created or written."""

    def __init__(self, store: str, message: str):
        self.store = str(store)
        super().__init__(f"{self.store}: {message}")


class StoreLockedError(StoreError):
    """Another ingest holds the store's write lock."""


class SchemaVersionError(StoreError):
    """The store was written with a schema version this code cannot read."""


class SourceNotFoundError(EtlError, KeyError):
    """A source id is not in the store's catalog (or was rejected)."""

    def __init__(self, source_id: str, store: str):
        self.source_id = source_id
        self.store = str(store)
        super().__init__(f"{self.store}: no ingested source with id {source_id!r}")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.args[0]


class OptionError(EtlError, ValueError):
    """An option of an ETL command has a value that cannot work (batch size 0, NaN cut...)."""
