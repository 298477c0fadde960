"""Storages: the `Storage` façade over local, S3 and GCS adapters, and `open_storages`."""

from runtime.storage.base import Adapter, Body, Fetched, ObjectInfo
from runtime.storage.facade import Storage
from runtime.storage.factory import Storages, open_storage, open_storages

__all__ = [
    "Adapter",
    "Body",
    "Fetched",
    "ObjectInfo",
    "Storage",
    "Storages",
    "open_storage",
    "open_storages",
]
