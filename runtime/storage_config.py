"""Named storage sources from a YAML file in the shape of the seed's `flysystem.storages` block.

`STORAGE_SOURCE=NAME` selects the entries `NAME.storage`, `NAME.artifact`, and optionally
`NAME.mirror_meta` / `NAME.mirror_dist`. Strings may hold `%env(VAR)%` or `%env(json:VAR)%`
references, resolved from the environment or from `parameters: env(VAR): default`.
Service arguments the runtime has no use for (`$httpClient`, `$logger`) are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from runtime.aws_args import parse_aws_args
from runtime.errors import ConfigError
from runtime.specs import GcsSpec, LocalSpec, Role, S3Spec, StorageSpec

if TYPE_CHECKING:
    from runtime.settings import Settings

# YAML entry suffix -> role. `.storage` is required, the rest fall back to the same bucket.
SUFFIXES: dict[str, Role] = {
    "storage": "packages",
    "artifact": "artifacts",
    "mirror_meta": "mirror_meta",
    "mirror_dist": "mirror_dist",
}
S3_ADAPTERS = ("asyncaws", "aws", "s3")
GCS_ADAPTERS = ("gcloud", "gcs")
ADAPTERS = (*S3_ADAPTERS, *GCS_ADAPTERS, "local")
_GCS_CLIENT_KEYS = {"keyFilePath", "projectId"}

_ENV_REF = re.compile(r"%env\((?:(json|string):)?([A-Za-z_][A-Za-z0-9_]*)\)%")


def load_named_source(path: Path, name: str, settings: Settings) -> dict[Role, StorageSpec] | None:
    """The four storages of source `name`, or None when the file does not define it."""
    from runtime.settings import STORAGE_CONFIG_VAR

    document = _read_yaml(path, STORAGE_CONFIG_VAR)
    storages = _mapping(document.get("flysystem", {}), "flysystem").get("storages", {})
    storages = _mapping(storages, "flysystem.storages")
    if f"{name}.storage" not in storages:
        return None
    refs = _References(settings.environ, _mapping(document.get("parameters") or {}, "parameters"))
    services = _mapping(document.get("services") or {}, "services")
    loader = _SourceLoader(name, storages, services, refs, settings)
    return loader.load()


def _read_yaml(path: Path, var: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{var}: {path} is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{var}: {path} must be a YAML mapping with a 'flysystem' key")
    return document


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"storage config: {key} must be a mapping")
    return value


class _References:
    """Resolves `%env(...)%` against the environment, then `parameters: env(NAME)` defaults."""

    def __init__(self, environ: Mapping[str, str], parameters: Mapping[str, Any]) -> None:
        self._environ = environ
        self._parameters = parameters

    def resolve(self, value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        whole = _ENV_REF.fullmatch(value)
        if whole:
            return self._lookup(whole.group(2), whole.group(1), key)
        return _ENV_REF.sub(lambda m: str(self._lookup(m.group(2), "string", key)), value)

    def _lookup(self, name: str, processor: str | None, key: str) -> Any:
        if name in self._environ:
            raw: Any = self._environ[name]
        elif f"env({name})" in self._parameters:
            raw = self._parameters[f"env({name})"]
        else:
            raise ConfigError(
                f"storage config: {key} references %env({name})% but {name} is not set"
                f" and 'parameters' has no env({name}) default"
            )
        if processor != "json" or not isinstance(raw, str):
            return raw
        try:
            return json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            raise ConfigError(
                f"storage config: {key}: {name} is not valid JSON (%env(json:{name})%)"
            ) from None


class _SourceLoader:
    def __init__(
        self,
        name: str,
        storages: dict[str, Any],
        services: dict[str, Any],
        refs: _References,
        settings: Settings,
    ) -> None:
        self.name = name
        self.storages = storages
        self.services = services
        self.refs = refs
        self.settings = settings

    def load(self) -> dict[Role, StorageSpec]:
        main = self._entry("storage")
        assert main is not None  # load_named_source checked that it exists
        specs: dict[Role, StorageSpec] = {"packages": main}
        for suffix, role in SUFFIXES.items():
            if suffix == "storage":
                continue
            spec = self._entry(suffix)
            # A role the file leaves out lives beside `.storage`, under the contract's prefix.
            specs[role] = (
                spec if spec is not None else replace(main, prefix=self.settings.prefix_of(role))
            )
        return specs

    def _entry(self, suffix: str) -> StorageSpec | None:
        from runtime.settings import validate_bucket, validate_prefix

        entry_name = f"{self.name}.{suffix}"
        if entry_name not in self.storages:
            return None
        key = f"flysystem.storages.{entry_name}"
        entry = self.refs.resolve(_mapping(self.storages[entry_name], key), key)
        adapter = entry.get("adapter")
        options = _mapping(entry.get("options") or {}, f"{key}.options")
        unknown = set(entry) - {"adapter", "options", "visibility", "directory_visibility"}
        if unknown:
            raise ConfigError(f"storage config: {key}: unknown key {sorted(unknown)[0]!r}")
        prefix = validate_prefix(str(options.get("prefix") or ""), where=f"{key}.options.prefix")
        if adapter == "local":
            directory = options.get("directory")
            if not directory:
                raise ConfigError(f"storage config: {key}.options.directory is required")
            return LocalSpec(root=Path(str(directory)), prefix=prefix)
        if adapter not in S3_ADAPTERS + GCS_ADAPTERS:
            raise ConfigError(
                f"storage config: {key}.adapter: unknown adapter {adapter!r};"
                f" allowed: {', '.join(ADAPTERS)}"
            )
        bucket = validate_bucket(str(options.get("bucket") or ""), where=f"{key}.options.bucket")
        arguments = self._client_arguments(options.get("client"), f"{key}.options.client")
        if adapter in S3_ADAPTERS:
            configuration = arguments.get("$configuration", arguments.get(0))
            args = parse_aws_args(configuration, where=f"{key} client configuration")
            return S3Spec(bucket=bucket, prefix=prefix, args=args)
        client = arguments.get(0) or {}
        if not isinstance(client, dict) or set(client) - _GCS_CLIENT_KEYS:
            raise ConfigError(
                f"storage config: {key} client arguments: allowed keys:"
                f" {', '.join(sorted(_GCS_CLIENT_KEYS))}"
            )
        return GcsSpec(
            bucket=bucket,
            prefix=prefix,
            key_file=client.get("keyFilePath"),
            project=client.get("projectId"),
        )

    def _client_arguments(self, client: Any, key: str) -> dict[str | int, Any]:
        """The service's arguments, by `$name` and by position."""
        if not client:
            raise ConfigError(f"storage config: {key} is required (a service id)")
        service_id = str(client).removeprefix("@")
        if service_id not in self.services:
            raise ConfigError(
                f"storage config: {key}: service {service_id!r} is not defined under 'services'"
            )
        service_key = f"services.{service_id}"
        service = _mapping(self.services[service_id] or {}, service_key)
        arguments = self.refs.resolve(service.get("arguments") or [], f"{service_key}.arguments")
        if isinstance(arguments, list):
            return dict(enumerate(arguments))
        if isinstance(arguments, dict):
            return dict(arguments)
        raise ConfigError(f"storage config: {service_key}.arguments must be a list or mapping")
