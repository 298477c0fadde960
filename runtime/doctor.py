"""`run_doctor`: where the credentials come from, and a write / read / delete probe of every
storage, each failure paired with a hint that names the fix. No printing here: `satchel
doctor` renders the report, and scripts (or a health endpoint) can use it as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from runtime.aws_args import s3_endpoint
from runtime.credential_hints import credential_hint
from runtime.credentials import CredentialInfo, ResolvedCredentials, resolve_credentials
from runtime.errors import BackendUnavailable, NotFound, PermissionDenied, StorageError
from runtime.identity import Identity, caller_identity
from runtime.settings import LOCAL_ROOT_VAR, STORAGE_CONFIG_VAR, Settings
from runtime.specs import ROLES, GcsSpec, Role, S3Spec, StorageSpec, describe
from runtime.storage import Storage, open_storages

PROBE_DIR = ".satchel-doctor"
STEPS = ("write", "read", "delete")
# The credential fields of the JSON report (DESIGN.md), whatever else CredentialInfo carries.
CREDENTIAL_KEYS = ("source", "role_arn", "token_file", "session_name", "expires")


class ReadMismatch(StorageError):
    """The probe read back other bytes than it wrote."""


@dataclass(frozen=True)
class StorageCheck:
    """One storage's probe. A step's result is None when it was not run (the write failed)."""

    kind: str
    location: str
    steps: dict[str, bool | None]
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return all(self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kind": self.kind,
            "location": self.location,
            "steps": {name: {"ok": result} for name, result in self.steps.items()},
            "error": self.error,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class DoctorReport:
    credentials: CredentialInfo  # those of the packages storage
    storages: dict[Role, StorageCheck]
    identity: Identity | None = None  # None: not an S3 storage

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.storages.values())

    def as_dict(self) -> dict[str, Any]:
        """The `satchel doctor --json` document (DESIGN.md); new sections go in here."""
        credentials = self.credentials.as_dict()
        return {
            "credentials": {key: credentials.get(key) for key in CREDENTIAL_KEYS},
            "identity": self.identity.as_dict() if self.identity else None,
            "storages": {role: check.as_dict() for role, check in self.storages.items()},
            "ok": self.ok,
        }


def run_doctor(settings: Settings) -> DoctorReport:
    """Probe every storage. A ConfigError from opening them propagates (it is no probe result)."""
    storages = open_storages(settings)

    def check(role: Role) -> StorageCheck:
        return probe(storages.by_role(role), settings.storages[role], settings)

    # In parallel: against an unreachable endpoint each probe waits out its own timeouts.
    with ThreadPoolExecutor(max_workers=len(ROLES)) as pool:
        checks = list(pool.map(check, ROLES))
    # After the probes: temporary credentials have been fetched by then and know their expiry.
    packages_spec = settings.storages["packages"]
    credentials = describe_credentials(storages.packages, packages_spec, settings)
    identity = None
    resolved = getattr(storages.packages.adapter, "credentials", None)
    if isinstance(packages_spec, S3Spec) and resolved is not None:
        identity = caller_identity(resolved, packages_spec.args, settings.environ)
    return DoctorReport(
        credentials=credentials,
        storages=dict(zip(ROLES, checks, strict=True)),
        identity=identity,
    )


def describe_credentials(
    storage: Storage | None, spec: StorageSpec, settings: Settings
) -> CredentialInfo:
    """Where a storage's credentials come from (never the credentials themselves)."""
    if isinstance(spec, S3Spec):
        # The client's own credentials when the adapter exposes them, else resolved afresh.
        resolved: ResolvedCredentials | None = (
            getattr(storage.adapter, "credentials", None) if storage else None
        )
        if resolved is None:
            resolved = resolve_credentials(spec.args, settings.environ)
        return resolved.info
    return CredentialInfo(source="gcs" if isinstance(spec, GcsSpec) else "none")


def probe(storage: Storage, spec: StorageSpec, settings: Settings) -> StorageCheck:
    """Write, read back and delete a unique key; stop at the write if it fails."""
    key = f"{PROBE_DIR}/{uuid.uuid4()}.txt"
    payload = f"satchel doctor probe {key}\n".encode()

    def read_back() -> None:
        got = storage.read(key)
        if got != payload:
            raise ReadMismatch(
                f"read back {len(got)} bytes that differ from the {len(payload)} written",
                storage=storage.name,
                key=key,
                operation="read",
            )

    actions: dict[str, Callable[[], object]] = {
        "write": lambda: storage.write(key, payload),
        "read": read_back,
        "delete": lambda: storage.delete(key),  # runs even after a failed read: clean up
    }
    steps: dict[str, bool | None] = dict.fromkeys(STEPS)
    failure: tuple[str, StorageError] | None = None
    for step, action in actions.items():
        if steps["write"] is False:
            break  # nothing was written: nothing to read or delete
        try:
            action()
            steps[step] = True
        except StorageError as exc:
            steps[step] = False
            failure = failure or (step, exc)
    where = describe(spec)
    if failure is None:
        return StorageCheck(where["kind"], where["location"], steps)
    step, error = failure
    hint = hint_for(error, step, spec, settings, storage)
    return StorageCheck(where["kind"], where["location"], steps, str(error), hint)


# (error type, storage kind or "*", step or None for any step) -> hint. The most specific
# entry wins; templates are filled from `_facts`. Add new hints here, nowhere else.
HINTS: dict[tuple[type, str, str | None], str] = {
    (PermissionDenied, "s3", None): (
        "check the credentials (source: {source}) and that the role/user policy allows"
        " s3:PutObject, s3:GetObject and s3:DeleteObject on {resource}"
    ),
    (NotFound, "s3", "write"): (
        "the bucket {bucket!r} does not exist at {endpoint}: check {bucket_setting}"
        " or create the bucket"
    ),
    (BackendUnavailable, "s3", None): (
        "check the endpoint ({endpoint}; set by STORAGE_AWS_ARGS.endpoint or AWS_ENDPOINT_URL)"
        " and the network between here and it"
    ),
    (PermissionDenied, "local", None): (
        f"check {LOCAL_ROOT_VAR}: {{location}} must be a writable directory"
        " on a writable (not read-only) filesystem"
    ),
    (NotFound, "local", None): (
        f"check {LOCAL_ROOT_VAR}: something that is not a directory is in the way of {{location}}"
    ),
    (BackendUnavailable, "local", None): (
        f"check the disk holding {{location}} ({LOCAL_ROOT_VAR}): full, or failing?"
    ),
    (PermissionDenied, "gcs", None): (
        "check the GCS credentials (keyFilePath, GOOGLE_APPLICATION_CREDENTIALS) and that they"
        " may create, read and delete objects in {location}"
    ),
    (NotFound, "gcs", "write"): (
        "the bucket {bucket!r} does not exist: check {bucket_setting} or create the bucket"
    ),
    (BackendUnavailable, "gcs", None): (
        "check the network to Google Cloud Storage (or STORAGE_EMULATOR_HOST)"
    ),
    (NotFound, "*", "read"): (
        "the object just written could not be read back: check for a proxy, a cache or a"
        " lifecycle rule between satchel and {location}"
    ),
    (ReadMismatch, "*", None): (
        "the bytes read back differ from those written: check for a proxy or gateway"
        " rewriting objects between satchel and {location}"
    ),
}


def hint_for(
    error: StorageError,
    step: str,
    spec: StorageSpec,
    settings: Settings,
    storage: Storage | None = None,
) -> str | None:
    """The fix for `error` at `step` on this storage, from HINTS; None when there is none."""
    if isinstance(spec, S3Spec):
        specific = _s3_specific_hint(error, describe_credentials(storage, spec, settings), spec)
        if specific:
            return specific
    for cls in type(error).__mro__:
        for kind, at in ((spec.kind, step), (spec.kind, None), ("*", step), ("*", None)):
            template = HINTS.get((cls, kind, at))
            if template is not None:
                return template.format(**_facts(spec, settings, storage))
    return None


def _s3_specific_hint(error: StorageError, info: CredentialInfo, spec: S3Spec) -> str | None:
    """Hints that depend on the cause: the credential chain, or S3's own error code."""
    hint = credential_hint(error.cause, info)
    if hint:
        return hint
    if isinstance(error.cause, ClientError):
        code = error.cause.response.get("Error", {}).get("Code")
        if code == "RequestTimeTooSkewed":
            return "this machine's clock is off (clock skew): sync it (NTP) and retry"
        if code in ("AccessDenied", "Forbidden", "403") and info.role_arn:
            return (
                f"the role {info.role_arn} may not do this here: check that its permission"
                " policy allows s3:GetObject, s3:PutObject and s3:DeleteObject on"
                f" {_resource(spec)}"
            )
    return None


def _facts(spec: StorageSpec, settings: Settings, storage: Storage | None) -> dict[str, str]:
    facts = {"location": describe(spec)["location"], "source": "", "endpoint": ""}
    facts["bucket_setting"] = (
        "STORAGE_AWS_BUCKET"
        if settings.source == "s3"
        else f"the bucket in the file named by {STORAGE_CONFIG_VAR}"
    )
    if isinstance(spec, S3Spec | GcsSpec):
        facts["bucket"] = spec.bucket
        facts["resource"] = _resource(spec)
    if isinstance(spec, S3Spec):
        facts["source"] = describe_credentials(storage, spec, settings).source
        facts["endpoint"] = s3_endpoint(spec.args, settings.environ) or "the AWS endpoint"
    return facts


def _resource(spec: S3Spec | GcsSpec) -> str:
    return f"{spec.bucket}/{spec.prefix}/*" if spec.prefix else f"{spec.bucket}/*"
