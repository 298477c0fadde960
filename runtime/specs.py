"""Where each storage lives: the resolved description that `open_storages` builds from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.aws_args import AwsArgs

Role = Literal["packages", "artifacts", "mirror_meta", "mirror_dist"]
ROLES: tuple[Role, ...] = ("packages", "artifacts", "mirror_meta", "mirror_dist")


@dataclass(frozen=True)
class LocalSpec:
    root: Path
    prefix: str
    kind: Literal["local"] = "local"


@dataclass(frozen=True)
class S3Spec:
    bucket: str
    prefix: str
    args: AwsArgs
    kind: Literal["s3"] = "s3"


@dataclass(frozen=True)
class GcsSpec:
    bucket: str
    prefix: str
    key_file: str | None = None
    project: str | None = None
    kind: Literal["gcs"] = "gcs"


StorageSpec = LocalSpec | S3Spec | GcsSpec


def describe(spec: StorageSpec) -> dict[str, str]:
    """A public, secret-free summary of a spec for `satchel env` and `doctor`."""
    if isinstance(spec, LocalSpec):
        return {"kind": "local", "location": str(spec.root / spec.prefix)}
    if isinstance(spec, S3Spec):
        where = f"s3://{spec.bucket}/{spec.prefix}"
        return {"kind": "s3", "location": where, "endpoint": spec.args.endpoint or "aws"}
    return {"kind": "gcs", "location": f"gs://{spec.bucket}/{spec.prefix}"}
