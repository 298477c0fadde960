"""The runtime's exceptions.

Two families, as in flysystem: `ConfigError` for anything wrong in the environment or the
storage config file (the CLI maps it to exit code 2), and `StorageError` for a failed storage
operation, with one subclass per kind of failure so callers can catch narrowly or broadly.
Messages name the storage and the key, never a credential.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Bad configuration. The message names the variable (or config-file key) and the fix."""


class StorageError(Exception):
    """A storage operation failed. Carries the storage name, the key and the original error."""

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        storage: str | None = None,
        operation: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key
        self.storage = storage
        self.operation = operation
        self.cause = cause

    def __str__(self) -> str:
        where = []
        if self.storage:
            where.append(f"storage {self.storage!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        head = f"{self.operation} failed" if self.operation else "storage error"
        if where:
            head += " (" + ", ".join(where) + ")"
        return f"{head}: {self.reason}"


class NotFound(StorageError):
    """The key (or the bucket) does not exist."""


class PermissionDenied(StorageError):
    """The backend refused the credentials or the operation (403, bad signature, no credentials)."""


class AlreadyExists(StorageError):
    """A create-only write found the key taken (the backend enforces it: S3 If-None-Match,
    GCS ifGenerationMatch=0, an exclusive link on local disk)."""


class InvalidKey(StorageError):
    """The key was rejected before any I/O (traversal, control characters, too long, empty)."""


class BackendUnavailable(StorageError):
    """The backend could not be reached or failed (connection refused, timeout, 5xx)."""
