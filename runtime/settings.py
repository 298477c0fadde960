"""`load_settings`: the env contract (DESIGN.md), validated once, with every storage resolved."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from runtime.aws_args import AwsArgs, parse_aws_args
from runtime.credentials import RefreshWindows
from runtime.errors import ConfigError, InvalidKey
from runtime.keys import normalize_key
from runtime.specs import ROLES, LocalSpec, Role, S3Spec, StorageSpec

# Our own variables (the contract's are fixed by the Packeton docs).
LOCAL_ROOT_VAR = "SATCHEL_LOCAL_ROOT"
STORAGE_CONFIG_VAR = "SATCHEL_STORAGE_CONFIG"
METADATA_TTL_VAR = "SATCHEL_MIRROR_METADATA_TTL"
ADVISORY_VAR = "SATCHEL_CREDENTIALS_ADVISORY_REFRESH"
MANDATORY_VAR = "SATCHEL_CREDENTIALS_MANDATORY_REFRESH"

# S3 and GCS both accept this: 3-63 lowercase letters, digits, dots, hyphens (GCS: underscores).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")

# variable name -> (field name, default); the defaults are the Packeton docs' own.
CONTRACT: dict[str, tuple[str, str]] = {
    "STORAGE_SOURCE": ("source", "local"),
    "STORAGE_AWS_BUCKET": ("bucket", "packeton-bucket"),
    "STORAGE_AWS_PREFIX": ("prefix", "packeton"),
    "STORAGE_AWS_ARTIFACT_PREFIX": ("artifact_prefix", "artifact"),
    "STORAGE_AWS_MIRROR_META_PREFIX": ("mirror_meta_prefix", "mirror-meta"),
    "STORAGE_AWS_MIRROR_DIST_PREFIX": ("mirror_dist_prefix", "mirror-dist"),
    "STORAGE_AWS_ARGS": ("aws_args", "{}"),
    "MIRROR_METADATA_CACHE_DIR": ("mirror_metadata_cache_dir", ""),
    "MIRROR_DIST_CACHE_DIR": ("mirror_dist_cache_dir", ""),
    LOCAL_ROOT_VAR: ("local_root", "var/storage"),
    STORAGE_CONFIG_VAR: ("storage_config", ""),
    # Mirror caching: seconds a cached metadata file is served before one revalidating GET;
    # bounds of the in-process metadata LRU and of the dist, metadata and archive caches
    # on disk (each shared by every process using the directory).
    METADATA_TTL_VAR: ("mirror_metadata_ttl", "60"),
    "SATCHEL_MIRROR_METADATA_MEMORY": ("mirror_metadata_memory", "64M"),
    "SATCHEL_MIRROR_DIST_CACHE_SIZE": ("mirror_dist_cache_size", "10G"),
    "SATCHEL_MIRROR_METADATA_CACHE_SIZE": ("mirror_metadata_cache_size", "1G"),
    "SATCHEL_ARCHIVE_CACHE_DIR": ("archive_cache_dir", ""),
    "SATCHEL_ARCHIVE_CACHE_SIZE": ("archive_cache_size", "2G"),
    # Seconds before expiry to refresh temporary credentials (botocore's own defaults).
    ADVISORY_VAR: ("advisory_refresh", "900"),
    MANDATORY_VAR: ("mandatory_refresh", "600"),
}
_VAR_OF_FIELD = {field: var for var, (field, _) in CONTRACT.items()}


def validate_bucket(name: str, *, where: str) -> str:
    if not _BUCKET.match(name):
        shown = repr(name) if name else "empty"
        raise ConfigError(
            f"{where}: bucket name is {shown}; use 3-63 lowercase letters, digits, '.', '-'"
        )
    return name


def validate_prefix(value: str, *, where: str) -> str:
    try:
        return normalize_key(value, allow_empty=True)
    except InvalidKey as exc:
        raise ConfigError(f"{where}: {exc.reason}") from None


def parse_size(value: object) -> int:
    """`10G`, `512M`, `64k` or plain bytes (binary units: 1K = 1024)."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    multiplier = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        size = int(float(number) * multiplier)
    except ValueError:
        raise ValueError("expected a size such as 512M, 10G or a number of bytes") from None
    if size < 0:
        raise ValueError("must not be negative")
    return size


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class Settings(BaseModel):
    """The validated environment. `storages` maps each role to where it lives."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    source: str
    bucket: str
    prefix: str
    artifact_prefix: str
    mirror_meta_prefix: str
    mirror_dist_prefix: str
    aws_args: AwsArgs
    mirror_metadata_cache_dir: Path | None
    mirror_dist_cache_dir: Path | None
    local_root: Path
    storage_config: Path | None
    mirror_metadata_ttl: float = Field(ge=0)
    mirror_metadata_memory: ByteSize
    mirror_dist_cache_size: ByteSize
    mirror_metadata_cache_size: ByteSize
    archive_cache_dir: Path | None
    archive_cache_size: ByteSize
    advisory_refresh: int = Field(ge=0)
    mandatory_refresh: int = Field(ge=0)
    storages: dict[Role, StorageSpec] = Field(default_factory=dict)
    # The environment the settings came from: credential resolution and the GCS emulator
    # read their standard variables from here, never from os.environ directly.
    environ: Mapping[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @field_validator(
        "mirror_metadata_cache_dir",
        "mirror_dist_cache_dir",
        "storage_config",
        "archive_cache_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def refresh_windows(self) -> RefreshWindows:
        return RefreshWindows(advisory=self.advisory_refresh, mandatory=self.mandatory_refresh)

    def prefix_of(self, role: Role) -> str:
        return {
            "packages": self.prefix,
            "artifacts": self.artifact_prefix,
            "mirror_meta": self.mirror_meta_prefix,
            "mirror_dist": self.mirror_dist_prefix,
        }[role]

    def public_env(self) -> dict[str, str]:
        """The contract's variables as resolved, secrets redacted (for `satchel env`)."""
        import json

        out: dict[str, str] = {}
        for var, (field, _) in CONTRACT.items():
            value = getattr(self, field)
            if isinstance(value, AwsArgs):
                out[var] = json.dumps(value.public_dict())
            else:
                out[var] = "" if value is None else str(value)
        return out


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate the environment (default: `os.environ`) into `Settings`, or raise ConfigError."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {
        field: env.get(var, default) for var, (field, default) in CONTRACT.items()
    }

    raw["aws_args"] = parse_aws_args(raw["aws_args"], where="STORAGE_AWS_ARGS")
    for field in ("prefix", "artifact_prefix", "mirror_meta_prefix", "mirror_dist_prefix"):
        raw[field] = validate_prefix(raw[field], where=_VAR_OF_FIELD[field])
    source = raw["source"].strip()
    if not source:
        raise ConfigError("STORAGE_SOURCE is empty; use 'local', 's3' or a configured source")
    raw["source"] = source
    try:
        settings = Settings(**raw, environ=MappingProxyType(env))
    except ValidationError as exc:
        error = exc.errors()[0]
        var = _VAR_OF_FIELD.get(str(error["loc"][0]), str(error["loc"][0]))
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{var}: {message}, got {error['input']!r}") from None
    if settings.mandatory_refresh > settings.advisory_refresh:
        raise ConfigError(f"{MANDATORY_VAR}: must not exceed {ADVISORY_VAR}")
    _check_cache_dirs(settings)
    return settings.model_copy(update={"storages": _resolve_storages(settings)})


def _check_cache_dirs(settings: Settings) -> None:
    """Each cache keeps its own bound over its whole directory: two caches in one directory
    would evict each other's entries."""
    seen: dict[Path, str] = {}
    for field in ("mirror_metadata_cache_dir", "mirror_dist_cache_dir", "archive_cache_dir"):
        directory = getattr(settings, field)
        if directory is None:
            continue
        resolved = Path(os.path.abspath(directory))
        other = seen.get(resolved)
        if other is not None:
            raise ConfigError(
                f"{_VAR_OF_FIELD[field]}: {str(directory)!r} is also {other}; "
                "give each cache a directory of its own (e.g. /tmp/mirror-meta, /tmp/mirror-dist)"
            )
        seen[resolved] = _VAR_OF_FIELD[field]


def _resolve_storages(settings: Settings) -> dict[Role, StorageSpec]:
    from runtime.storage_config import load_named_source

    if settings.storage_config is not None:
        named = load_named_source(settings.storage_config, settings.source, settings)
        if named is not None:
            return named
    if settings.source == "local":
        root = settings.local_root
        return {role: LocalSpec(root=root, prefix=settings.prefix_of(role)) for role in ROLES}
    if settings.source == "s3":
        bucket = validate_bucket(settings.bucket, where="STORAGE_AWS_BUCKET")
        return {
            role: S3Spec(bucket=bucket, prefix=settings.prefix_of(role), args=settings.aws_args)
            for role in ROLES
        }
    where = (
        f"the file {settings.storage_config} has no '{settings.source}.storage' entry"
        if settings.storage_config
        else f"{STORAGE_CONFIG_VAR} is not set"
    )
    raise ConfigError(
        f"STORAGE_SOURCE={settings.source!r} is not 'local' or 's3' and {where}; "
        f"define it under flysystem.storages in the file named by {STORAGE_CONFIG_VAR}"
    )
