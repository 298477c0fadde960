"""Build the four storages from resolved settings. Clients are shared between storages that
use the same backend configuration, so the four S3 storages of one bucket share one pool."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from runtime.errors import ConfigError
from runtime.settings import LOCAL_ROOT_VAR, Settings
from runtime.specs import ROLES, GcsSpec, LocalSpec, Role, S3Spec, StorageSpec
from runtime.storage.facade import Storage


@dataclass(frozen=True)
class Storages:
    packages: Storage
    artifacts: Storage
    mirror_meta: Storage
    mirror_dist: Storage

    def by_role(self, role: str) -> Storage:
        role = role.replace("-", "_")
        if role not in ROLES:
            raise ConfigError(
                f"unknown storage {role!r}; use packages, artifacts, mirror-meta or mirror-dist"
            )
        storage: Storage = getattr(self, role)
        return storage

    def items(self) -> list[tuple[Role, Storage]]:
        return [(role, getattr(self, role)) for role in ROLES]


def open_storages(settings: Settings) -> Storages:
    clients: dict[Any, Any] = {}
    built = {role: open_storage(role, settings.storages[role], settings, clients) for role in ROLES}
    return Storages(**built)


def open_storage(
    name: str, spec: StorageSpec, settings: Settings, clients: dict[Any, Any] | None = None
) -> Storage:
    clients = {} if clients is None else clients
    if isinstance(spec, LocalSpec):
        from runtime.storage.local import LocalAdapter

        _check_local_root(spec.root)
        return Storage(name, LocalAdapter(spec.root), spec.prefix)
    if isinstance(spec, S3Spec):
        from runtime.aws import s3_client
        from runtime.credentials import resolve_credentials
        from runtime.storage.s3 import S3Adapter

        if spec.args not in clients:
            # Resolved once per configuration: the storages of one bucket share credentials.
            credentials = resolve_credentials(
                spec.args, settings.environ, windows=settings.refresh_windows
            )
            clients[spec.args] = (s3_client(spec.args, settings.environ, credentials), credentials)
        client, credentials = clients[spec.args]
        return Storage(name, S3Adapter(client, spec.bucket, credentials), spec.prefix)
    from runtime.storage.gcs import GcsAdapter

    key = (spec.key_file, spec.project)
    if key not in clients:
        clients[key] = _gcs_client(spec, settings)
    return Storage(name, GcsAdapter(clients[key], spec.bucket), spec.prefix)


def _check_local_root(root: os.PathLike[str]) -> None:
    try:
        os.makedirs(root, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"{LOCAL_ROOT_VAR}: {os.fspath(root)} is a file; point it at a directory"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{LOCAL_ROOT_VAR}: cannot create {os.fspath(root)}: {exc.strerror}"
        ) from None
    # access() reports a read-only filesystem even to root, which ignores permission bits.
    if not os.access(root, os.W_OK):
        raise ConfigError(
            f"{LOCAL_ROOT_VAR}: {os.fspath(root)} is not writable (read-only filesystem?);"
            " point it at a writable directory"
        )


def _gcs_client(spec: GcsSpec, settings: Settings) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    emulator = settings.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        # The emulator takes no credentials; the client would otherwise look for real ones.
        return gcs.Client(
            project=spec.project or "satchel",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
    if spec.key_file:
        try:
            return gcs.Client.from_service_account_json(spec.key_file, project=spec.project)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"storage config: keyFilePath {spec.key_file!r} cannot be used: {exc}"
            ) from None
    return gcs.Client(project=spec.project)
