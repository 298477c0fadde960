"""AWS credential resolution with IRSA auto-detection, on botocore's own providers.

The chain, first hit wins (DESIGN.md):

1. `static`        accessKeyId + accessKeySecret in STORAGE_AWS_ARGS
2. `web-identity`  roleArn / webIdentityTokenFile / roleSessionName in STORAGE_AWS_ARGS
                   (explicit); a key left out falls back to its own env var, one by one
3. `web-identity`  AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN in the env (what EKS injects)
4. `container`     AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity)
5. `default`       botocore's default chain (profile, env keys, IMDS, ...)

Web identity credentials are deferred (no STS call until first use) and refreshable; the
token file is re-read at every refresh, because kubelet rotates it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleWithWebIdentityCredentialFetcher,
    ContainerProvider,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
    RefreshableCredentials,
)
from botocore.exceptions import ClientError, CredentialRetrievalError

from runtime import metrics
from runtime.aws_args import AwsArgs, region_of, sts_endpoint
from runtime.errors import ConfigError

# The STS client of refreshes: botocore's defaults (60 s timeouts, legacy retries) would let
# a mandatory refresh hold the refresh lock, and every request behind it, for minutes.
# Worst case here: 3 attempts of 5 s connect + 10 s read, with standard-mode backoff.
STS_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3}
)

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME_CHARS = re.compile(r"[^\w+=,.@-]")


@dataclass(frozen=True)
class RefreshWindows:
    """Seconds before expiry: advisory (refresh, keep old on failure), mandatory (must refresh).

    botocore's own are 15 and 10 minutes; tests with short STS sessions shrink them.
    """

    advisory: int = 15 * 60
    mandatory: int = 10 * 60


@dataclass(frozen=True)
class CredentialInfo:
    """Public description of resolved credentials, for `satchel doctor` and logs: no secret."""

    source: str
    role_arn: str | None = None
    token_file: str | None = None
    session_name: str | None = None
    expires: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "role_arn": self.role_arn,
            "token_file": self.token_file,
            "session_name": self.session_name,
            "expires": self.expires,
            "detail": self.detail,
        }


class TokenFileError(CredentialRetrievalError):  # type: ignore[misc]
    """The web identity token file is missing or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            provider="web-identity",
            error_msg=f"cannot read the web identity token file {path}: {reason}",
        )
        self.path = path


class StsRefused(CredentialRetrievalError):  # type: ignore[misc]
    """STS refused AssumeRoleWithWebIdentity (trust policy, audience, expiry, signature...)."""

    def __init__(self, role_arn: str, code: str, message: str) -> None:
        super().__init__(
            provider="web-identity",
            error_msg=f"STS refused to let the token assume {role_arn} ({code}: {message})",
        )
        self.role_arn = role_arn
        self.code = code
        self.sts_message = message


class ResolvedCredentials:
    """The credentials chosen for one S3 configuration, and how they were chosen."""

    def __init__(
        self,
        session: botocore.session.Session,
        info: CredentialInfo,
        credentials: Credentials | None = None,
    ) -> None:
        self._session = session
        self._info = info
        self.credentials = credentials
        self.refreshes = 0  # STS (or container endpoint) calls made so far

    def botocore_session(self) -> botocore.session.Session:
        return self._session

    @property
    def info(self) -> CredentialInfo:
        """The description, with the current expiry of refreshable credentials."""
        expiry: datetime | None = getattr(self.credentials, "_expiry_time", None)
        return replace(self._info, expires=expiry.isoformat() if expiry else None)

    def __repr__(self) -> str:
        return f"ResolvedCredentials(source={self._info.source!r})"


def resolve_credentials(
    args: AwsArgs,
    environ: Mapping[str, str],
    *,
    windows: RefreshWindows | None = None,
    hostname: Callable[[], str] = socket.gethostname,
    clock: Callable[[], float] = time.time,
) -> ResolvedCredentials:
    """Pick the first source of the chain that applies. Raises ConfigError for bad settings."""
    windows = windows or RefreshWindows()
    session = botocore.session.Session()
    if args.profile:
        session.set_config_variable("profile", args.profile)

    if args.has_static_keys:
        assert args.access_key_id is not None and args.access_key_secret is not None
        token = args.session_token.get_secret_value() if args.session_token else None
        session.set_credentials(
            args.access_key_id, args.access_key_secret.get_secret_value(), token
        )
        detail = "accessKeyId and accessKeySecret in STORAGE_AWS_ARGS"
        return ResolvedCredentials(session, CredentialInfo(source="static", detail=detail))

    explicit = args.role_arn or args.web_identity_token_file or args.role_session_name
    if explicit or (environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and environ.get("AWS_ROLE_ARN")):
        return _web_identity(args, environ, session, windows, hostname, clock)

    if environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return _container(environ, session, windows)

    return ResolvedCredentials(
        session, CredentialInfo(source="default", detail="botocore's default credential chain")
    )


def _pick(
    arg_value: str | None, arg_name: str, environ: Mapping[str, str], var: str
) -> tuple[str | None, str]:
    """One key of the explicit web identity: from the args, else from its own env var."""
    if arg_value:
        return arg_value, f"{arg_name} from STORAGE_AWS_ARGS"
    value = environ.get(var) or None
    return value, f"{arg_name} from {var}" if value else ""


def _web_identity(
    args: AwsArgs,
    environ: Mapping[str, str],
    session: botocore.session.Session,
    windows: RefreshWindows,
    hostname: Callable[[], str],
    clock: Callable[[], float],
) -> ResolvedCredentials:
    explicit = bool(args.role_arn or args.web_identity_token_file or args.role_session_name)
    role_arn, role_from = _pick(args.role_arn, "roleArn", environ, "AWS_ROLE_ARN")
    token_file, token_from = _pick(
        args.web_identity_token_file, "webIdentityTokenFile", environ, "AWS_WEB_IDENTITY_TOKEN_FILE"
    )
    session_name, _ = _pick(
        args.role_session_name, "roleSessionName", environ, "AWS_ROLE_SESSION_NAME"
    )
    where = "STORAGE_AWS_ARGS" if explicit else "AWS_ROLE_ARN"
    if not role_arn:
        raise ConfigError(f"{where}: a web identity needs a role: set roleArn or AWS_ROLE_ARN")
    if not token_file:
        raise ConfigError(
            f"{where}: a web identity needs a token file:"
            " set webIdentityTokenFile or AWS_WEB_IDENTITY_TOKEN_FILE"
        )
    if not ROLE_ARN.match(role_arn):
        var = "STORAGE_AWS_ARGS.roleArn" if args.role_arn else "AWS_ROLE_ARN"
        raise ConfigError(
            f"{var}: {role_arn!r} is not an IAM role ARN"
            " (expected arn:aws:iam::<12-digit account>:role/<name>)"
        )
    session_name = session_name or _default_session_name(hostname(), clock())

    endpoint = sts_endpoint(args, environ)
    region = region_of(args, environ)
    if not region and not endpoint:
        raise ConfigError(
            "STORAGE_AWS_ARGS: region is missing; STS is regional: set region or AWS_REGION"
        )
    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=sts_client_creator(session, region or "us-east-1", endpoint),
        web_identity_token_loader=functools.partial(_read_token, token_file),
        role_arn=role_arn,
        extra_args={"RoleSessionName": session_name},
        expiry_window_seconds=windows.advisory,
    )
    info = CredentialInfo(
        source="web-identity",
        role_arn=role_arn,
        token_file=token_file,
        session_name=session_name,
        detail=("explicit: " if explicit else "IRSA: ")
        + ", ".join(part for part in (role_from, token_from) if part),
    )
    resolved = ResolvedCredentials(session, info)

    def refresh() -> dict[str, Any]:
        resolved.refreshes += 1
        try:
            fetched: dict[str, Any] = fetcher.fetch_credentials()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StsRefused(
                role_arn, str(error.get("Code", "")), str(error.get("Message", ""))
            ) from exc
        return fetched

    credentials = DeferredRefreshableCredentials(
        refresh_using=_counted(refresh), method="assume-role-with-web-identity"
    )
    _set_windows(credentials, windows)
    resolved.credentials = credentials
    _install(session, credentials)
    return resolved


def sts_client_creator(
    session: botocore.session.Session, region: str, endpoint: str | None
) -> Callable[..., Any]:
    """The fetcher's client factory: its own config (unsigned requests) over STS_CONFIG."""

    def create(service_name: str, config: Config | None = None, **kwargs: Any) -> Any:
        merged = STS_CONFIG if config is None else STS_CONFIG.merge(config)
        return session.create_client(
            service_name, region_name=region, endpoint_url=endpoint, config=merged, **kwargs
        )

    return create


def _container(
    environ: Mapping[str, str],
    session: botocore.session.Session,
    windows: RefreshWindows,
) -> ResolvedCredentials:
    """EKS Pod Identity through botocore's ContainerProvider, deferred like web identity."""
    provider = ContainerProvider(environ=dict(environ))
    info = CredentialInfo(
        source="container",
        token_file=environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        detail="EKS Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI",
    )
    resolved = ResolvedCredentials(session, info)

    def refresh() -> dict[str, Any]:
        resolved.refreshes += 1
        loaded = provider.load()  # one call to the endpoint, which re-reads the token file
        if loaded is None:
            raise CredentialRetrievalError(provider="container", error_msg="no credentials")
        frozen = loaded.get_frozen_credentials()
        return {
            "access_key": frozen.access_key,
            "secret_key": frozen.secret_key,
            "token": frozen.token,
            "expiry_time": loaded._expiry_time.isoformat(),
        }

    credentials = DeferredRefreshableCredentials(
        refresh_using=_counted(refresh), method="container-role"
    )
    _set_windows(credentials, windows)
    resolved.credentials = credentials
    _install(session, credentials)
    return resolved


class _Resolved(CredentialProvider):  # type: ignore[misc]
    """Hands botocore the credentials we chose, through its public resolver component."""

    METHOD = "satchel"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def _counted(refresh: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The refresh, in the metrics: refreshes and failures, and the new expiry."""

    def counted() -> dict[str, Any]:
        try:
            fetched = refresh()
        except Exception:
            metrics.CREDENTIAL_REFRESHES.labels("failed").inc()
            raise
        metrics.CREDENTIAL_REFRESHES.labels("ok").inc()
        expiry = fetched.get("expiry_time")
        with contextlib.suppress(TypeError, ValueError):
            metrics.CREDENTIAL_EXPIRY.set(datetime.fromisoformat(str(expiry)).timestamp())
        return fetched

    return counted


def _install(session: botocore.session.Session, credentials: Credentials) -> None:
    session.register_component("credential_provider", CredentialResolver([_Resolved(credentials)]))


def _read_token(path: str) -> str:
    """Read the token file afresh (kubelet rotates it) with an error that names the file."""
    try:
        with open(path) as token_file:
            token = token_file.read().strip()
    except OSError as exc:
        raise TokenFileError(path, exc.strerror or str(exc)) from exc
    if not token:
        raise TokenFileError(path, "the file is empty")
    return token


def _default_session_name(hostname: str, now: float) -> str:
    """`satchel-<hostname>-<epoch>`, trimmed to STS's 64 allowed characters."""
    host = _SESSION_NAME_CHARS.sub("-", hostname)[:40] or "host"
    return f"satchel-{host}-{int(now)}"


def _set_windows(credentials: RefreshableCredentials, windows: RefreshWindows) -> None:
    # Class attributes in botocore, meant to be overridden; per instance here.
    credentials._advisory_refresh_timeout = windows.advisory
    credentials._mandatory_refresh_timeout = windows.mandatory
