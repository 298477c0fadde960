"""`STORAGE_AWS_ARGS`: the S3 client configuration, with the seed's AsyncAws key names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from runtime.errors import ConfigError


class AwsArgs(BaseModel):
    """The keys allowed in `STORAGE_AWS_ARGS` (AsyncAws names, plus `stsEndpoint` and `profile`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    region: str | None = None
    endpoint: str | None = None
    access_key_id: str | None = Field(default=None, alias="accessKeyId")
    access_key_secret: SecretStr | None = Field(default=None, alias="accessKeySecret")
    session_token: SecretStr | None = Field(default=None, alias="sessionToken")
    role_arn: str | None = Field(default=None, alias="roleArn")
    web_identity_token_file: str | None = Field(default=None, alias="webIdentityTokenFile")
    role_session_name: str | None = Field(default=None, alias="roleSessionName")
    path_style_endpoint: bool = Field(default=False, alias="pathStyleEndpoint")
    sts_endpoint: str | None = Field(default=None, alias="stsEndpoint")
    profile: str | None = None

    @field_validator("path_style_endpoint", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any) -> bool:
        # AsyncAws configs often carry the strings "true"/"false"; anything else is a mistake.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("expected true or false")

    @field_validator("endpoint", "sts_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def has_static_keys(self) -> bool:
        return self.access_key_id is not None and self.access_key_secret is not None

    def public_dict(self) -> dict[str, Any]:
        """The args as the user wrote them, with secrets replaced by a marker."""
        out = self.model_dump(by_alias=True, exclude_none=True)
        for secret in ("accessKeySecret", "sessionToken"):
            if secret in out:
                out[secret] = "**********"
        return out


def s3_endpoint(args: AwsArgs, environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint: the args' `endpoint`, else the standard AWS variables, else AWS itself."""
    return args.endpoint or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")


def sts_endpoint(args: AwsArgs, environ: Mapping[str, str]) -> str | None:
    """The STS endpoint: `stsEndpoint`, else AWS_ENDPOINT_URL_STS, else AWS's regional one."""
    return args.sts_endpoint or environ.get("AWS_ENDPOINT_URL_STS") or None


def region_of(args: AwsArgs, environ: Mapping[str, str]) -> str | None:
    return args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")


ALLOWED_KEYS = sorted(field.alias or name for name, field in AwsArgs.model_fields.items())
_SECRET_KEYS = {"accessKeySecret", "sessionToken"}


def parse_aws_args(raw: str | dict[str, Any] | list[Any] | None, *, where: str) -> AwsArgs:
    """Parse `STORAGE_AWS_ARGS` (a JSON object; `[]` or empty means none).

    `where` names the variable or config-file line in error messages.
    """
    value: Any = raw
    if isinstance(raw, str):
        if not raw.strip():
            return AwsArgs()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            # The message of JSONDecodeError quotes no input: safe with secrets inside.
            raise ConfigError(
                f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno});"
                ' expected an object such as {"region": "eu-west-1"}'
            ) from None
    if value is None or value == []:
        return AwsArgs()
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} must be a JSON object, got {type(value).__name__};"
            ' expected e.g. {"region": "eu-west-1"}'
        )
    unknown = sorted(set(value) - set(ALLOWED_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(ALLOWED_KEYS)}"
        )
    try:
        args = AwsArgs.model_validate(value)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    if (args.access_key_id is None) != (args.access_key_secret is None):
        raise ConfigError(
            f"{where}: accessKeyId and accessKeySecret go together; set both or neither"
        )
    return args


def _describe(exc: ValidationError, where: str) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    shown = "" if key in _SECRET_KEYS else f", got {error['input']!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {key}: {message}{shown}"
