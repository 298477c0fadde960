"""The private Composer repository's domain: archive inspection, immutable version records
and the p2 documents derived from them, all in the bucket. No HTTP here (runtime.app)."""

from runtime.repository.archive import InvalidArchive, inspect_archive
from runtime.repository.store import Published, Repository, VersionConflict

__all__ = ["InvalidArchive", "Published", "Repository", "VersionConflict", "inspect_archive"]
