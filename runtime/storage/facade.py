"""`Storage`: the façade every caller uses. It normalises and prefixes keys before any I/O
and stamps errors with the storage's name; the adapter behind it does the I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import BinaryIO, TypeVar

from runtime import metrics
from runtime.errors import AlreadyExists, NotFound, StorageError
from runtime.keys import join_key, normalize_key
from runtime.storage.base import Adapter, Body, Fetched, ObjectInfo

T = TypeVar("T")


class Storage:
    def __init__(self, name: str, adapter: Adapter, prefix: str = "") -> None:
        self.name = name
        self.adapter = adapter
        self.prefix = prefix

    @property
    def identity(self) -> str:
        """Where this storage's objects live (backend, bucket, prefix): two storages with
        the same identity hold the same objects."""
        return f"{self.adapter.location}/{self.prefix}"

    def __repr__(self) -> str:
        return f"Storage({self.name!r}, {type(self.adapter).__name__}, prefix={self.prefix!r})"

    def read(self, key: str) -> bytes:
        return self._call("read", key, self.adapter.read)

    def open(self, key: str) -> BinaryIO:
        return self._call("open", key, self.adapter.open)

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        """One request: info and body stream, or `not_modified` if the ETag still matches."""
        fetched = self._call("read", key, lambda full: self.adapter.get(full, if_none_match))
        if fetched.info is None:
            return fetched
        return replace(fetched, info=replace(fetched.info, key=self._relative(fetched.info.key)))

    def write(self, key: str, body: Body) -> ObjectInfo | None:
        """Create or replace; returns the new object's info when the backend tells it."""
        info = self._call("write", key, lambda full: self.adapter.write(full, body))
        return replace(info, key=self._relative(info.key)) if info else None

    def create(self, key: str, data: bytes) -> ObjectInfo | None:
        """Create-only: raises AlreadyExists when the key is taken (see the adapter)."""
        info = self._call("create", key, lambda full: self.adapter.create(full, data))
        return replace(info, key=self._relative(info.key)) if info else None

    def exists(self, key: str) -> bool:
        return self._call("exists", key, self.adapter.exists)

    def stat(self, key: str) -> ObjectInfo:
        info = self._call("stat", key, self.adapter.stat)
        return replace(info, key=self._relative(info.key))

    def delete(self, key: str) -> None:
        self._call("delete", key, self.adapter.delete)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under `prefix` (relative to this storage), keys relative to the storage."""
        try:
            relative = normalize_key(prefix, allow_empty=True)
            full = join_key(self.prefix, relative)
            # A directory-like prefix: 'a' lists 'a/x', not 'ab'.
            metrics.STORAGE_REQUESTS.labels(self.name, "list").inc()
            listing = self.adapter.list(f"{full}/" if full else "")
            for info in listing:
                yield replace(info, key=self._relative(info.key))
        except StorageError as exc:
            raise self._stamp(exc, "list", prefix) from exc.cause

    def check_bucket(self) -> None:
        """Raises NotFound ("bucket X does not exist"), PermissionDenied or BackendUnavailable
        when the storage's bucket cannot be used; one request, no key involved."""
        try:
            self._counted("check", self.adapter.check_bucket)
        except StorageError as exc:
            exc.storage = exc.storage or self.name
            exc.operation = exc.operation or "check"
            raise

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _call(self, operation: str, key: str, action: Callable[[str], T]) -> T:
        try:
            full = join_key(self.prefix, normalize_key(key))  # InvalidKey: before any I/O
        except StorageError as exc:
            raise self._stamp(exc, operation, key) from exc.cause
        try:
            return self._counted(operation, lambda: action(full))
        except StorageError as exc:
            raise self._stamp(exc, operation, key) from exc.cause

    def _counted(self, operation: str, action: Callable[[], T]) -> T:
        metrics.STORAGE_REQUESTS.labels(self.name, operation).inc()
        try:
            return action()
        except StorageError as exc:
            if not isinstance(exc, NotFound | AlreadyExists):  # answers, not failures
                metrics.STORAGE_ERRORS.labels(self.name, operation, type(exc).__name__).inc()
            raise

    def _stamp(self, exc: StorageError, operation: str, key: str) -> StorageError:
        exc.storage = exc.storage or self.name
        exc.operation = exc.operation or operation
        exc.key = key if exc.key is None else exc.key
        return exc
