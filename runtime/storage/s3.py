"""S3 (and S3-compatible) adapter on boto3.

Request economy: `read` is one GET, `exists`/`stat` one HEAD, `write` one PUT (a stream over
the multipart threshold: one multipart upload), `delete` one DELETE. No ACL is ever sent:
buckets with object ownership enforced reject ACL headers.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, NoReturn

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from runtime.credentials import ResolvedCredentials
from runtime.errors import (
    AlreadyExists,
    BackendUnavailable,
    NotFound,
    PermissionDenied,
    StorageError,
)
from runtime.storage.base import Body, Fetched, ObjectInfo

MULTIPART_THRESHOLD = 16 * 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=MULTIPART_THRESHOLD,
    multipart_chunksize=MULTIPART_THRESHOLD,
    max_concurrency=4,
)
_STREAM_CHUNK = 1024 * 1024
CREATE_ATTEMPTS = 3

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}


class S3Adapter:
    def __init__(
        self, client: Any, bucket: str, credentials: ResolvedCredentials | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.credentials = credentials  # how the client authenticates, for doctor and tests
        endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or "aws"
        self.location = f"s3://{bucket}@{endpoint}"  # what tells two buckets apart

    def read(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        stream = self.get(key).stream
        assert stream is not None
        return stream

    def get(self, key: str, if_none_match: str | None = None) -> Fetched:
        conditional = {"IfNoneMatch": f'"{if_none_match}"'} if if_none_match else {}
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, ChecksumMode="ENABLED", **conditional
            )
        except ClientError as exc:
            if if_none_match and _status(exc) == 304:
                return Fetched(info=None, stream=None)
            _raise(exc, "read")
        except BotoCoreError as exc:
            _raise(exc, "read")
        info = ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"].strip('"'),
            modified=response["LastModified"],
            checksum=_full_object_checksum(response),
            encryption="SSE-C"
            if response.get("SSECustomerAlgorithm")
            else response.get("ServerSideEncryption"),
        )
        stream = io.BufferedReader(_BodyStream(response["Body"]), buffer_size=_STREAM_CHUNK)
        return Fetched(info=info, stream=stream)

    def write(self, key: str, body: Body) -> ObjectInfo | None:
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                data = bytes(body)
                response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
            else:
                self.client.upload_fileobj(body, self.bucket, key, Config=TRANSFER)
                return None  # the multipart answer carries no Last-Modified: no extra HEAD
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "write")
        return _put_info(key, data, response)

    def create(self, key: str, data: bytes) -> ObjectInfo | None:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*"
                )
            except ClientError as exc:
                if _code(exc) == "PreconditionFailed" or _status(exc) == 412:
                    raise AlreadyExists("the key exists already", operation="create") from exc
                # AWS: another conditional write of the key was under way; one of them wins
                if _code(exc) == "ConditionalRequestConflict" and attempt + 1 < CREATE_ATTEMPTS:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                _raise(exc, "create")
            except BotoCoreError as exc:
                _raise(exc, "create")
            return _put_info(key, data, response)
        raise AssertionError("unreachable")

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            _raise(exc, "exists")
        except BotoCoreError as exc:
            _raise(exc, "exists")
        return True

    def stat(self, key: str) -> ObjectInfo:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "stat")
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            etag=head["ETag"].strip('"'),
            modified=head["LastModified"],
        )

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "delete")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        etag=item["ETag"].strip('"'),
                        modified=item["LastModified"],
                    )
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "list")

    def check_bucket(self) -> None:
        """One HeadBucket (allowed by s3:ListBucket on the bucket)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                reason = f"bucket {self.bucket!r} does not exist"
                raise NotFound(reason, operation="check", cause=exc) from exc
            _raise(exc, "check")
        except BotoCoreError as exc:
            _raise(exc, "check")


class _BodyStream(io.RawIOBase):
    """A botocore StreamingBody as a raw stream whose errors are StorageErrors."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise BackendUnavailable(
                f"the connection broke while reading: {exc}", operation="read", cause=exc
            ) from exc
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


def _put_info(key: str, data: bytes, response: dict[str, Any]) -> ObjectInfo:
    # S3 stamps Last-Modified with the time it took the object: the response's Date.
    date = response["ResponseMetadata"]["HTTPHeaders"].get("date")
    modified = parsedate_to_datetime(date) if date else datetime.now(UTC)
    return ObjectInfo(key=key, size=len(data), etag=response["ETag"].strip('"'), modified=modified)


def _full_object_checksum(response: dict[str, Any]) -> str | None:
    """S3's checksum of the whole body, if the GET returned one (a multipart object's
    COMPOSITE checksum is a checksum of part checksums: no use to a reader)."""
    if response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    for algorithm in ("CRC32", "CRC32C", "SHA1", "SHA256"):
        value = response.get(f"Checksum{algorithm}")
        if value and "-" not in value:  # older S3 answers "<value>-<parts>" for multipart
            return f"{algorithm}:{value}"
    return None


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise(exc: Exception, operation: str) -> NoReturn:
    kind: type[StorageError]
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = exc.response.get("Error", {}).get("Message") or code
        if code in _NOT_FOUND or status == 404:
            kind = NotFound
            reason = "the bucket does not exist" if code == "NoSuchBucket" else "no such key"
        elif code in _DENIED or status == 403:
            kind = PermissionDenied
            reason = f"access denied by S3 ({code}: {message}); check the credentials and policy"
        else:
            kind = BackendUnavailable
            reason = f"S3 error {code} (HTTP {status}): {message}"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        kind = PermissionDenied
        reason = f"no usable AWS credentials: {exc}; run 'satchel doctor' for details"
    elif isinstance(exc, ConnectionError):
        kind = BackendUnavailable
        reason = f"cannot reach S3: {exc}"
    else:
        kind = BackendUnavailable
        reason = str(exc)
    raise kind(reason, operation=operation, cause=exc) from exc
