"""S3 specifics against SeaweedFS: request economy, headers, checksums, errors."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import runtime
from infra.local.ports import free_port
from infra.local.seaweedfs import SeaweedFS
from runtime import BackendUnavailable, NotFound, PermissionDenied, Storage
from runtime.aws import checksum_policy
from runtime.storage.s3 import MULTIPART_THRESHOLD


@dataclass
class Requests:
    """HTTP requests as sent (one entry per attempt), recorded by a botocore event hook."""

    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        self.sent.append((operation, headers))

    @property
    def operations(self) -> list[str]:
        return [operation for operation, _ in self.sent]


def _storage(env: dict[str, str]) -> Storage:
    return runtime.open_storages(runtime.load_settings(env)).packages


@pytest.fixture
def s3(s3_env: dict[str, str]) -> Storage:
    return _storage(s3_env)


@pytest.fixture
def requests(s3: Storage) -> Iterator[Requests]:
    recorder = Requests()
    events = s3.adapter.client.meta.events  # type: ignore[attr-defined]
    events.register("before-send.s3", recorder)
    yield recorder
    events.unregister("before-send.s3", recorder)


def test_each_operation_costs_exactly_one_request(s3: Storage, requests: Requests) -> None:
    s3.write("k.json", b"{}")
    s3.write("stream.json", io.BytesIO(b"[]"))
    assert s3.read("k.json") == b"{}"
    assert s3.exists("k.json")
    assert not s3.exists("absent.json")
    s3.stat("k.json")
    with s3.open("stream.json") as stream:
        stream.read()
    s3.delete("k.json")
    assert requests.operations == [
        "PutObject",
        "PutObject",
        "GetObject",
        "HeadObject",
        "HeadObject",
        "HeadObject",
        "GetObject",
        "DeleteObject",
    ]


def test_a_read_of_a_missing_key_is_one_get_not_head_then_get(
    s3: Storage, requests: Requests
) -> None:
    with pytest.raises(NotFound):
        s3.read("absent")
    assert requests.operations == ["GetObject"]


def test_a_large_stream_is_one_multipart_upload(s3: Storage, requests: Requests) -> None:
    payload = secrets.token_bytes(2 * MULTIPART_THRESHOLD + 123)
    s3.write("big.bin", io.BytesIO(payload))
    assert requests.operations[0] == "CreateMultipartUpload"
    assert requests.operations[-1] == "CompleteMultipartUpload"
    assert requests.operations.count("UploadPart") == 3
    assert hashlib.sha256(s3.read("big.bin")).digest() == hashlib.sha256(payload).digest()


def test_writes_never_send_an_acl(s3: Storage, requests: Requests) -> None:
    s3.write("a", b"x")
    s3.write("b", io.BytesIO(secrets.token_bytes(MULTIPART_THRESHOLD + 1)))
    assert requests.sent
    assert not [h for _, h in requests.sent if any(k.startswith("x-amz-acl") for k in h)]


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_custom_endpoints_get_plain_bodies_with_a_precomputed_crc32_header(
    s3: Storage, requests: Requests
) -> None:
    """S3-compatible servers get plain bodies (no aws-chunked encoding, no trailers), each
    with its CRC32 in a header; a multipart upload's completion carries the whole object's."""
    payload = secrets.token_bytes(MULTIPART_THRESHOLD + 1)
    s3.write("a", b"x")
    s3.write("b", io.BytesIO(payload))
    for operation, headers in requests.sent:
        assert "x-amz-trailer" not in headers, operation
        assert "aws-chunked" not in headers.get("content-encoding", ""), operation
    sent = [(op, headers.get("x-amz-checksum-crc32")) for op, headers in requests.sent]
    parts = sorted(sent[2:-1])  # uploaded concurrently: in any order
    assert sent[:2] == [("PutObject", _crc32(b"x")), ("CreateMultipartUpload", None)]
    assert parts == sorted(
        [
            ("UploadPart", _crc32(payload[:MULTIPART_THRESHOLD])),
            ("UploadPart", _crc32(payload[MULTIPART_THRESHOLD:])),
        ]
    )
    assert sent[-1] == ("CompleteMultipartUpload", _crc32(payload))
    create, complete = requests.sent[1][1], requests.sent[-1][1]
    assert create["x-amz-checksum-algorithm"] == "CRC32"
    assert create["x-amz-checksum-type"] == complete["x-amz-checksum-type"] == "FULL_OBJECT"


@pytest.mark.parametrize("how", ["bytes", "short stream", "multipart stream", "create"])
def test_every_object_written_carries_a_full_object_crc32_that_gets_return_and_validate(
    s3: Storage, seaweed: SeaweedFS, how: str
) -> None:
    size = 2 * MULTIPART_THRESHOLD + 5 if how == "multipart stream" else 1000
    payload = secrets.token_bytes(size)
    key = f"checked-{how.replace(' ', '-')}"
    if how == "bytes":
        s3.write(key, payload)
    elif how == "create":
        s3.create(key, payload)
    else:
        s3.write(key, io.BytesIO(payload))
    fetched = s3.get(key)
    assert fetched.info is not None and fetched.stream is not None
    with fetched.stream:
        assert fetched.stream.read() == payload
    assert fetched.info.checksum == f"CRC32:{_crc32(payload)}"
    assert fetched.info.checksum_validated  # botocore checks the body against it
    head = seaweed.admin_client().head_object(
        Bucket=seaweed.bucket, Key=f"{s3.prefix}/{key}", ChecksumMode="ENABLED"
    )
    assert head["ChecksumCRC32"] == _crc32(payload)
    if how == "multipart stream":
        assert head["ChecksumType"] == "FULL_OBJECT" and head["ETag"].endswith('-3"')


def test_a_body_that_does_not_match_its_checksum_fails_the_read_at_its_end(
    s3: Storage, lying_checksum: Any
) -> None:
    payload = secrets.token_bytes(3 * 1024 * 1024)
    s3.write("lied-about", payload)
    lying_checksum(s3.adapter.client, _crc32(b"other bytes"))  # type: ignore[attr-defined]
    with s3.open("lied-about") as stream, pytest.raises(BackendUnavailable, match="checksum"):
        stream.read()


class _FailingStream(io.RawIOBase):
    """MULTIPART_THRESHOLD + 1 bytes, then an error of the caller's own."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.given > MULTIPART_THRESHOLD:
            raise ValueError("the source broke")
        n = min(len(buffer), MULTIPART_THRESHOLD + 1 - self.given)
        buffer[:n] = bytes(n)
        self.given += n
        return n


def test_a_multipart_upload_whose_source_fails_is_aborted_with_the_sources_error(
    s3: Storage, seaweed: SeaweedFS, requests: Requests
) -> None:
    with pytest.raises(ValueError, match="the source broke"):
        s3.write("half.bin", io.BufferedReader(_FailingStream()))
    assert requests.operations[-1] == "AbortMultipartUpload"
    assert not s3.exists("half.bin")
    uploads = seaweed.admin_client().list_multipart_uploads(
        Bucket=seaweed.bucket, Prefix=f"{s3.prefix}/half.bin"
    )
    assert not uploads.get("Uploads")


def test_with_aws_default_checksums_uploads_still_carry_only_our_plain_crc32(
    s3_env: dict[str, str],
) -> None:
    """The policy AWS gets (WHEN_SUPPORTED) adds no trailer to the adapter's uploads: each
    carries the CRC32 the adapter computed, as a header, and SeaweedFS verifies it."""
    s3 = _storage({**s3_env, "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_SUPPORTED"})
    recorder = Requests()
    s3.adapter.client.meta.events.register("before-send.s3", recorder)  # type: ignore[attr-defined]
    payload = secrets.token_bytes(MULTIPART_THRESHOLD + 5)
    s3.write("small", b"checked")
    s3.write("multi", io.BytesIO(payload))
    assert s3.read("small") == b"checked"
    assert s3.read("multi") == payload
    uploads = [(op, h) for op, h in recorder.sent if op in ("PutObject", "UploadPart")]
    assert [op for op, _ in uploads] == ["PutObject", "UploadPart", "UploadPart"]
    for operation, headers in uploads:
        assert "x-amz-trailer" not in headers, operation
        assert "aws-chunked" not in headers.get("content-encoding", ""), operation
    crcs = sorted(headers["x-amz-checksum-crc32"] for _, headers in uploads)
    expected = [b"checked", payload[:MULTIPART_THRESHOLD], payload[MULTIPART_THRESHOLD:]]
    assert crcs == sorted(_crc32(data) for data in expected)


def test_checksum_policy_is_aws_default_on_aws_and_when_required_elsewhere() -> None:
    assert checksum_policy(None, {}) == "when_supported"
    assert checksum_policy("https://s3.waw.io.cloud.ovh.net", {}) == "when_required"
    explicit = {"AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_SUPPORTED"}
    assert checksum_policy("https://minio.local", explicit) == "when_supported"


def test_path_style_addressing_works(s3_env: dict[str, str]) -> None:
    args = {**json.loads(s3_env["STORAGE_AWS_ARGS"]), "pathStyleEndpoint": True}
    s3 = _storage({**s3_env, "STORAGE_AWS_ARGS": json.dumps(args)})
    s3.write("p.txt", b"path style")
    assert s3.read("p.txt") == b"path style"


def test_the_endpoint_can_come_from_aws_endpoint_url(s3_env: dict[str, str]) -> None:
    args = json.loads(s3_env["STORAGE_AWS_ARGS"])
    endpoint = args.pop("endpoint")
    s3 = _storage({**s3_env, "STORAGE_AWS_ARGS": json.dumps(args), "AWS_ENDPOINT_URL": endpoint})
    s3.write("e.txt", b"via env")
    assert s3.read("e.txt") == b"via env"


def test_a_wrong_secret_is_permission_denied_without_the_secret(s3_env: dict[str, str]) -> None:
    wrong = "not-the-secret-" + secrets.token_hex(8)
    args = {**json.loads(s3_env["STORAGE_AWS_ARGS"]), "accessKeySecret": wrong}
    s3 = _storage({**s3_env, "STORAGE_AWS_ARGS": json.dumps(args)})
    with pytest.raises(PermissionDenied) as caught:
        s3.write("denied.txt", b"x")
    assert caught.value.storage == "packages" and caught.value.key == "denied.txt"
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


def test_a_missing_bucket_is_not_found(s3_env: dict[str, str]) -> None:
    # (SeaweedFS creates a bucket on an admin's first PUT, so only a read shows this.)
    s3 = _storage({**s3_env, "STORAGE_AWS_BUCKET": f"no-such-bucket-{secrets.token_hex(4)}"})
    with pytest.raises(NotFound, match="bucket does not exist"):
        s3.read("x.txt")


def test_an_unreachable_endpoint_is_backend_unavailable(s3_env: dict[str, str]) -> None:
    args = {**json.loads(s3_env["STORAGE_AWS_ARGS"]), "endpoint": f"http://127.0.0.1:{free_port()}"}
    s3 = _storage({**s3_env, "STORAGE_AWS_ARGS": json.dumps(args)})
    with pytest.raises(BackendUnavailable, match="cannot reach S3"):
        s3.read("x.txt")


def test_the_ovh_style_example_reaches_seaweedfs(seaweed: SeaweedFS) -> None:
    """Endpoint, keys and region only, exactly the keys of the seed's first example."""
    args = {
        "endpoint": seaweed.endpoint,
        "accessKeyId": seaweed.admin.access_key,
        "accessKeySecret": seaweed.admin.secret_key,
        "region": "waw",
    }
    env = {"STORAGE_SOURCE": "s3", "STORAGE_AWS_BUCKET": seaweed.bucket}
    storages = runtime.open_storages(
        runtime.load_settings({**env, "STORAGE_AWS_ARGS": json.dumps(args)})
    )
    key = f"ovh-{secrets.token_hex(4)}.txt"
    storages.artifacts.write(key, b"artifact")
    stored = seaweed.admin_client().get_object(Bucket=seaweed.bucket, Key=f"artifact/{key}")
    assert stored["Body"].read() == b"artifact"
    storages.artifacts.delete(key)
