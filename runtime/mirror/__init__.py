"""Mirror caching: metadata with TTL + ETag revalidation, immutable dists with an LRU cache.

mirror = runtime.open_mirror(settings)
entry = mirror.get_metadata("p2/vendor/package.json")   # MetadataEntry | None
mirror.put_metadata("p2/vendor/package.json", body)
with mirror.open_dist("vendor/package/1.0.0-abcdef.zip") as stream: ...
mirror.put_dist("vendor/package/1.0.0-abcdef.zip", stream_or_bytes)
mirror.stats.snapshot()                                  # hits, misses, bucket requests
"""

from runtime.mirror.metadata import MetadataEntry
from runtime.mirror.store import MirrorStore, open_mirror

__all__ = ["MetadataEntry", "MirrorStore", "open_mirror"]
