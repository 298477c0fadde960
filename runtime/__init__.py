"""Satchel's runtime: settings from the env contract, storages, credentials, mirror caching."""

from runtime.errors import (
    AlreadyExists,
    BackendUnavailable,
    ConfigError,
    InvalidKey,
    NotFound,
    PermissionDenied,
    StorageError,
)
from runtime.mirror import MetadataEntry, MirrorStore, open_mirror
from runtime.settings import Settings, load_settings
from runtime.storage import ObjectInfo, Storage, Storages, open_storages

__all__ = [
    "AlreadyExists",
    "BackendUnavailable",
    "ConfigError",
    "InvalidKey",
    "MetadataEntry",
    "MirrorStore",
    "NotFound",
    "ObjectInfo",
    "PermissionDenied",
    "Settings",
    "Storage",
    "StorageError",
    "Storages",
    "load_settings",
    "open_mirror",
    "open_storages",
]
