"""boto3 clients for S3 specs: endpoint, region, addressing, retries and checksum policy.

Credentials come from `runtime.credentials`; this module only shapes the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

from runtime.aws_args import AwsArgs, region_of, s3_endpoint
from runtime.credentials import ResolvedCredentials

DEFAULT_REGION = "us-east-1"


def checksum_policy(endpoint: str | None, environ: Mapping[str, str]) -> str:
    """`when_supported` on AWS, `when_required` on S3-compatible endpoints.

    Since 1.36, boto3 adds CRC checksums to every upload by default, sent as aws-chunked
    bodies with trailers, which many S3-compatible servers (older MinIO, Ceph RGW, several
    hosted providers) reject. An explicit AWS_REQUEST_CHECKSUM_CALCULATION wins over this
    choice. The S3 adapter's own uploads (PutObject, UploadPart) never get a trailer either
    way: they carry the CRC32 it computes, as a plain header, which botocore then leaves
    alone; GETs ask for it back (ChecksumMode=ENABLED), which botocore validates. The policy
    still decides for requests the adapter does not checksum itself.
    """
    explicit = environ.get("AWS_REQUEST_CHECKSUM_CALCULATION")
    if explicit:
        return explicit.lower()
    return "when_required" if endpoint else "when_supported"


def client_config(args: AwsArgs, environ: Mapping[str, str], **overrides: Any) -> Config:
    endpoint = s3_endpoint(args, environ)
    checksums = checksum_policy(endpoint, environ)
    options: dict[str, Any] = {
        "region_name": region_of(args, environ) or DEFAULT_REGION,
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": 32,
        "s3": {"addressing_style": "path" if args.path_style_endpoint else "auto"},
        "request_checksum_calculation": checksums,
        "response_checksum_validation": checksums,
    }
    options.update(overrides)
    return Config(**options)


def s3_client(
    args: AwsArgs, environ: Mapping[str, str], credentials: ResolvedCredentials, **config: Any
) -> Any:
    """An S3 client for these args, signing with the given resolved credentials."""
    session = boto3.session.Session(botocore_session=credentials.botocore_session())
    return session.client(
        "s3", endpoint_url=s3_endpoint(args, environ), config=client_config(args, environ, **config)
    )
