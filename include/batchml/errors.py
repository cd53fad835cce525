"""Exceptions raised by batchml. Every message names what is wrong, where, and what to do next."""

from __future__ import annotations


class BatchMLError(Exception):
    """Base class of every error this package raises on purpose."""


class SettingsError(BatchMLError):
    """An environment variable has a value batchml cannot use."""


class SpecError(BatchMLError):
    """A use-case spec is missing, unreadable or invalid."""


class LandingError(BatchMLError):
    """Landed raw data is missing, unreadable or does not match its declared schema."""


class DataValidationError(BatchMLError):
    """Great Expectations found data that breaks its suite; nothing downstream was published."""

    def __init__(self, message: str, failures: list[dict] | None = None, data_docs: str | None = None):
        super().__init__(message)
        self.failures = failures or []
        self.data_docs = data_docs


class PublishError(BatchMLError):
    """A partition or table could not be published atomically; the previous version is intact."""
