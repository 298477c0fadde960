"""AWS credential resolution for S3 storages.

Order (DESIGN.md): static keys in STORAGE_AWS_ARGS, then botocore's default chain.
The resolver returns a botocore session carrying the credentials and a public description
of where they came from (never a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session

from runtime.aws_args import AwsArgs


@dataclass(frozen=True)
class CredentialInfo:
    """Public description of resolved credentials, for `satchel doctor` and logs."""

    source: str
    role_arn: str | None = None
    token_file: str | None = None
    session_name: str | None = None
    expires: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "role_arn": self.role_arn,
            "token_file": self.token_file,
            "session_name": self.session_name,
            "expires": self.expires,
        }


class ResolvedCredentials:
    def __init__(self, session: botocore.session.Session, info: CredentialInfo) -> None:
        self._session = session
        self.info = info

    def botocore_session(self) -> botocore.session.Session:
        return self._session

    def __repr__(self) -> str:
        return f"ResolvedCredentials(source={self.info.source!r})"


def resolve_credentials(args: AwsArgs, environ: Mapping[str, str]) -> ResolvedCredentials:
    session = botocore.session.Session()
    if args.profile:
        session.set_config_variable("profile", args.profile)
    if args.has_static_keys:
        assert args.access_key_id and args.access_key_secret
        token = args.session_token.get_secret_value() if args.session_token else None
        session.set_credentials(
            args.access_key_id, args.access_key_secret.get_secret_value(), token
        )
        return ResolvedCredentials(session, CredentialInfo(source="static"))
    return ResolvedCredentials(session, CredentialInfo(source="default"))
