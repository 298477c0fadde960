"""Who the credentials are: STS GetCallerIdentity, where the endpoint has STS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.aws_args import AwsArgs, region_of, s3_endpoint, sts_endpoint
from runtime.credentials import ResolvedCredentials


@dataclass(frozen=True)
class Identity:
    """`ok` is None when the check was skipped (`skipped` says why)."""

    ok: bool | None
    arn: str | None = None
    account: str | None = None
    error: str | None = None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "arn": self.arn,
            "account": self.account,
            "error": self.error,
            "skipped": self.skipped,
        }


def caller_identity(
    credentials: ResolvedCredentials, args: AwsArgs, environ: Mapping[str, str]
) -> Identity:
    endpoint = sts_endpoint(args, environ)
    if endpoint is None and s3_endpoint(args, environ):
        # An S3-compatible server without a known STS: AWS's STS would not know these keys.
        return Identity(ok=None, skipped="no STS endpoint for this S3-compatible server")
    client = credentials.botocore_session().create_client(
        "sts", region_name=region_of(args, environ) or "us-east-1", endpoint_url=endpoint
    )
    try:
        answer = client.get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return Identity(ok=False, error=str(exc))
    return Identity(ok=True, arn=answer.get("Arn"), account=answer.get("Account"))
