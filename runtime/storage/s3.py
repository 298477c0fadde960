"""S3 (and S3-compatible) adapter on boto3.

Request economy: `read` is one GET, `exists`/`stat` one HEAD, `write` one PUT (a stream over
the multipart threshold: one multipart upload), `delete` one DELETE. No ACL is ever sent:
buckets with object ownership enforced reject ACL headers.

Every object written carries a CRC32 of its bytes, computed here and sent as a plain
`x-amz-checksum-crc32` header (a multipart upload: each part's, and the whole object's as a
FULL_OBJECT checksum at completion). S3 checks it on arrival, stores it and returns it to a
GET with `ChecksumMode=ENABLED`, where botocore validates the body against it as it is read:
a reader of our own objects never needs a hash of its own. A precomputed header is not the
aws-chunked trailer form that `runtime.aws` keeps away from S3-compatible servers.
"""

from __future__ import annotations

import base64
import contextlib
import io
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, NoReturn

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.httpchecksum import StreamingChecksumBody

from runtime.credentials import ResolvedCredentials
from runtime.errors import (
    AlreadyExists,
    BackendUnavailable,
    NotFound,
    PermissionDenied,
    StorageError,
)
from runtime.storage.base import Body, Fetched, ObjectInfo

MULTIPART_THRESHOLD = 16 * 1024 * 1024  # a stream this long or longer: a multipart upload
PART_SIZE = MULTIPART_THRESHOLD
PART_CONCURRENCY = 4  # parts uploading at once (at most one more read ahead in memory)
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
        checksum = _full_object_checksum(response)
        info = ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"].strip('"'),
            modified=response["LastModified"],
            checksum=checksum,
            # botocore wraps the body to check it as it streams (ChecksumMode=ENABLED, an
            # algorithm it supports, a value that is no checksum of part checksums) and raises
            # at the body's end on a mismatch. S3 returns one checksum: this one.
            checksum_validated=checksum is not None
            and isinstance(response["Body"], StreamingChecksumBody),
            encryption="SSE-C"
            if response.get("SSECustomerAlgorithm")
            else response.get("ServerSideEncryption"),
        )
        stream = io.BufferedReader(_BodyStream(response["Body"]), buffer_size=_STREAM_CHUNK)
        return Fetched(info=info, stream=stream)

    def write(self, key: str, body: Body) -> ObjectInfo | None:
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            data = _read_part(body)  # a short stream is one PUT like bytes
            if len(data) >= PART_SIZE:
                self._upload_parts(key, data, body)
                return None  # the multipart answer carries no Last-Modified: no extra HEAD
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ChecksumCRC32=_crc32_of(data)
            )
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "write")
        return _put_info(key, data, response)

    def _upload_parts(self, key: str, first: bytes, rest: BinaryIO) -> None:
        """One multipart upload with a FULL_OBJECT CRC32: parts read in order (the whole
        object's CRC computed as they are read), uploaded `PART_CONCURRENCY` at a time, each
        with its own CRC32. Any failure aborts the upload: no parts are left behind."""
        try:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
            )["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, "write")
        try:
            with ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="satchel-upload") as pool:
                parts: list[Future[dict[str, Any]]] = []
                pending: set[Future[dict[str, Any]]] = set()
                crc, number, data = 0, 1, first
                while data:
                    crc = zlib.crc32(data, crc)
                    part = pool.submit(self._upload_part, key, upload_id, number, data)
                    del data  # the part's thread holds it now
                    parts.append(part)
                    pending.add(part)
                    # block for a free slot only when all are busy (waiting on parts already
                    # done would return at once: a spin)
                    full = len(pending) >= PART_CONCURRENCY
                    finished, pending = wait(pending, None if full else 0, FIRST_COMPLETED)
                    for part in finished:  # a failed part raises: stop reading
                        part.result()
                    number += 1
                    data = _read_part(rest)
                done = [part.result() for part in parts]
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                ChecksumCRC32=_crc32(crc),
                ChecksumType="FULL_OBJECT",
            )
        except BaseException as exc:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                _raise(exc, "write")
            raise  # the caller's stream failed: its own error

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        checksum = _crc32_of(data)
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumCRC32=checksum,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": checksum}

    def create(self, key: str, data: bytes) -> ObjectInfo | None:
        checksum = _crc32_of(data)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", ChecksumCRC32=checksum
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
    """A botocore StreamingBody as a raw stream whose errors are StorageErrors. `read` hands
    over botocore's own chunks (no copy); when botocore validates the object's checksum, the
    read that reaches the end raises on a mismatch, as BackendUnavailable."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            chunk: bytes = self._body.read(size if size >= 0 else None)
        except FlexibleChecksumError as exc:
            raise BackendUnavailable(
                f"the bytes read do not match the object's checksum: {exc}",
                operation="read",
                cause=exc,
            ) from exc
        except (BotoCoreError, OSError) as exc:
            raise BackendUnavailable(
                f"the connection broke while reading: {exc}", operation="read", cause=exc
            ) from exc
        return chunk

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
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


def _read_part(stream: BinaryIO) -> bytes:
    """Up to PART_SIZE bytes of the caller's stream (fewer only at its end)."""
    data = stream.read(PART_SIZE)
    if not data or len(data) >= PART_SIZE:
        return bytes(data)
    chunks, size = [data], len(data)
    while size < PART_SIZE and (more := stream.read(PART_SIZE - size)):
        chunks.append(more)
        size += len(more)
    return b"".join(chunks)


def _crc32(value: int) -> str:
    """A CRC32 as S3 headers carry it: base64 of its 4 big-endian bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def _crc32_of(data: bytes) -> str:
    return _crc32(zlib.crc32(data))


def _full_object_checksum(response: dict[str, Any]) -> str | None:
    """S3's checksum of the whole body, if the GET returned one (a multipart object's
    COMPOSITE checksum is a checksum of part checksums: no use to a reader)."""
    if response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    for algorithm in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"):
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
