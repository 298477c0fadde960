"""Run the Pulumi program offline with Pulumi's own mocks, the way the language host runs it.

The language host chdirs into `infra/` (Pulumi.yaml's `main`) and runs it with runpy; we do
the same with the committed `Pulumi.<stack>.yaml` flattened into the config. Resources are
recorded as registered (mocks never reject duplicate names, so we do), data sources answer
from fixed fixtures, and unknown calls fail.
"""

from __future__ import annotations

import json
import os
import runpy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pulumi_aws's *V2 classes
    import pulumi
    import pulumi_aws  # noqa: F401  (imported once here, under the filter)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if any(r.name == args.name and r.type == args.typ for r in self.resources):
            raise AssertionError(f"duplicate resource name {args.typ} {args.name}")
        outputs = {**args.inputs, **_computed(args.typ, args.name, args.inputs)}
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs), outputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT_ID,
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if args.token == "aws:eks/getCluster:getCluster":
            return {
                "name": args.args["name"],
                "arn": f"arn:aws:eks:eu-west-1:{ACCOUNT_ID}:cluster/{args.args['name']}",
                "endpoint": "https://EXAMPLE.gr7.eu-west-1.eks.amazonaws.com",
                "certificateAuthorities": [{"data": "LS0tLS1CRUdJTi1DRVJU"}],
                "identities": [{"oidcs": [{"issuer": ISSUER}]}],
                "id": args.args["name"],
            }, []
        raise NotImplementedError(f"no mock for data source {args.token}")


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What AWS would compute for the resources the program reads back."""
    if typ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', '')}20261127abcdef"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    if typ == "aws:iam/role:Role":
        return {"name": name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"}
    if typ == "aws:iam/policy:Policy":
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{name}"}
    if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        host = inputs["url"].removeprefix("https://")
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"}
    return {}


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.mocks.resources if r.type == typ]

    def one(self, typ: str) -> Resource:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]


def stack_file_config(stack: str = "dev") -> dict[str, Any]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])


def stack_config_with(stack: str = "dev", **changes: Any) -> dict[str, Any]:
    """`Pulumi.<stack>.yaml`'s config with `satchel:<name>` keys changed (None removes one)."""
    config = stack_file_config(stack)
    for name, value in changes.items():
        key = name if ":" in name else f"satchel:{name}"
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def flatten(config: dict[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to the program: strings, objects as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()
    }


@contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_program(config: dict[str, Any], stack: str = "dev") -> ProgramRun:
    """Run `infra/` under mocks with this config; return resources and resolved outputs."""
    mocks = RecordingMocks()
    run = ProgramRun(mocks)
    exported: dict[str, Any] = {}
    pulumi.runtime.set_all_config(flatten(config))
    pulumi.runtime.set_mocks(mocks, project="satchel", stack=stack, preview=False)
    original_export = pulumi.export
    pulumi.export = lambda name, value: exported.__setitem__(name, value)  # type: ignore[assignment]

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> Any:
        with _in_directory(ROOT / "infra"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            runpy.run_path(".", run_name="__main__")
        names = list(exported)
        return pulumi.Output.all(*exported.values()).apply(
            lambda values: run.outputs.update(zip(names, values, strict=True))
        )

    try:
        program()
    finally:
        pulumi.export = original_export  # type: ignore[assignment]
        pulumi.runtime.set_all_config({})
    return run
