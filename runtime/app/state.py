"""What the mirror knows of a document's upstream copy, stored next to the document.

`<alias>/state/<path>` in mirror_meta: the upstream URL and validators (for conditional
refreshes), when the upstream last answered, the bucket ETag of the document it belongs to
(a mismatch means a refresh was cut short between the two writes: refetch), and for p2
documents where each mirrored dist comes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.app.composer import Dist
from runtime.app.upstream import Validators


def state_key(alias: str, path: str) -> str:
    return f"{alias}/state/{path}"


def document_key(alias: str, path: str) -> str:
    return f"{alias}/{path}"


@dataclass(frozen=True)
class UpstreamState:
    url: str
    validators: Validators
    checked: float  # wall-clock time of the upstream answer this state records
    body_etag: str
    dists: Mapping[str, Dist] = field(default_factory=dict)

    def to_json(self) -> bytes:
        document = {
            "url": self.url,
            "etag": self.validators.etag,
            "last_modified": self.validators.last_modified,
            "checked": self.checked,
            "body_etag": self.body_etag,
            "dists": {path: [d.url, d.shasum] for path, d in sorted(self.dists.items())},
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> UpstreamState:
        """Raises ValueError (or KeyError/TypeError) on a document it cannot read."""
        document = json.loads(body)
        return cls(
            url=str(document["url"]),
            validators=Validators(document.get("etag"), document.get("last_modified")),
            checked=float(document["checked"]),
            body_etag=str(document["body_etag"]),
            dists={path: Dist(url, shasum) for path, (url, shasum) in document["dists"].items()},
        )
