"""Where the app's local caches live in its pod, and the bounds that keep each volume whole.

Every cache dir outside `/tmp` gets an `emptyDir` of its own, `/tmp` always has one (the
caches under it share it), each with `appCacheSizeLimit`. kubelet evicts a pod whose
`emptyDir` outgrows its `sizeLimit`, so the caches on one volume are bounded to the limit
less some headroom, which must at least hold one large download on its way to the bucket
(spooled into the dist cache dir when there is one, else into `/tmp`) and the one entry a
cache may overshoot its bound by. Pure functions: the local target uses them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from posixpath import normpath
from typing import Protocol

MIB = 1 << 20
HEADROOM_FRACTION = 0.2
# A large dist archive: packagist's big zipballs are tens of MiB, a few exceed 100 MiB.
LARGE_DOWNLOAD = 256 * MIB
# Below this, a cache is not worth having: the bound would evict almost every fill.
MIN_CACHE_BOUND = 64 * MIB

METADATA_CACHE_SIZE_VAR = "SATCHEL_MIRROR_METADATA_CACHE_SIZE"
DIST_CACHE_SIZE_VAR = "SATCHEL_MIRROR_DIST_CACHE_SIZE"
# Share of a volume's budget per cache: dists are large, metadata documents small.
_WEIGHTS = {METADATA_CACHE_SIZE_VAR: 1, DIST_CACHE_SIZE_VAR: 4}

_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\Z"
)
_SUFFIXES = {
    "": 1,
    **{s: 1 << (10 * i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
    **{s: 1000**i for i, s in enumerate(("k", "M", "G", "T", "P", "E"), start=1)},
}


class CacheDirs(Protocol):
    @property
    def mirror_metadata_cache_dir(self) -> str: ...
    @property
    def mirror_dist_cache_dir(self) -> str: ...
    @property
    def app_cache_size_limit(self) -> str: ...


@dataclass(frozen=True)
class Volume:
    name: str
    mount_path: str
    caches: tuple[str, ...]  # the bound variables of the caches living on this volume


def parse_quantity(value: str) -> int:
    """A Kubernetes quantity in bytes: `2Gi` (binary), `500M` (decimal) or plain bytes."""
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity such as 2Gi, 1536Mi or 2G (decimal)"
        )
    return int(float(match["number"]) * _SUFFIXES[match["suffix"] or ""])


def headroom(limit: int) -> int:
    return max(int(limit * HEADROOM_FRACTION), LARGE_DOWNLOAD)


def _within(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def cache_volumes(config: CacheDirs) -> list[Volume]:
    """The app's emptyDir volumes: one per cache dir outside /tmp, then /tmp."""
    caches = [
        ("mirror-meta-cache", config.mirror_metadata_cache_dir, METADATA_CACHE_SIZE_VAR),
        ("mirror-dist-cache", config.mirror_dist_cache_dir, DIST_CACHE_SIZE_VAR),
    ]
    placed = [(name, normpath(path), var) for name, path, var in caches if path]
    mounts: dict[str, str] = {}  # mount path -> volume name
    for name, path, _ in placed:
        if not _within(path, "/tmp") and path not in mounts:
            mounts[path] = name
    mounts["/tmp"] = "tmp"
    on: dict[str, list[str]] = {mount: [] for mount in mounts}
    for _, path, var in placed:
        # A cache lives on the volume mounted deepest above it.
        mount = max((m for m in mounts if _within(path, m)), key=len, default="/tmp")
        on[mount].append(var)
    return [Volume(name, mount, tuple(on[mount])) for mount, name in mounts.items()]


def cache_bounds(config: CacheDirs) -> dict[str, str]:
    """The size bound of each configured cache (runtime size strings, `1310M` = 1310 MiB),
    such that the caches of a volume sum to at most its sizeLimit less the headroom."""
    limit = parse_quantity(config.app_cache_size_limit)
    bounds: dict[str, str] = {}
    for volume in cache_volumes(config):
        if not volume.caches:
            continue
        budget = limit - headroom(limit)
        weights = sum(_WEIGHTS[var] for var in volume.caches)
        for var in volume.caches:
            bound = budget * _WEIGHTS[var] // weights
            if bound < MIN_CACHE_BOUND:
                wanted = MIN_CACHE_BOUND * weights // _WEIGHTS[var]
                needed = -(-max(wanted + LARGE_DOWNLOAD, wanted / (1 - HEADROOM_FRACTION)) // MIB)
                raise ValueError(
                    f"{config.app_cache_size_limit} leaves {bound // MIB} MiB for the cache"
                    f" behind {var} on the {volume.mount_path} volume after"
                    f" {headroom(limit) // MIB} MiB of headroom; use at least {needed:.0f}Mi"
                )
            bounds[var] = f"{bound // MIB}M"
    return bounds
