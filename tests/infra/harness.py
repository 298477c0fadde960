"""Run the Pulumi program offline with Pulumi's own mocks, the way the language host runs it.

The language host chdirs into `infra/` (Pulumi.yaml's `main`) and runs it with runpy; we do
the same with the committed `Pulumi.<stack>.yaml` flattened into the config. Resources are
recorded as registered (mocks never reject duplicate names, so we do), with the options the
engine would see (dependencies, protect, retainOnDelete, deletedWith) and which inputs travel
as secrets; data sources answer from fixtures a test may change (the cluster's IAM OIDC
providers, its add-ons), and unknown calls fail.
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

import grpc
import yaml
from google.protobuf import json_format, struct_pb2

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pulumi_aws's *V2 classes
    import pulumi
    import pulumi_aws  # noqa: F401  (imported once here, under the filter)
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"


OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER.removeprefix('https://')}"
OIDC_LOOKUP = "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider"
ADDON_LOOKUP = "aws:eks/getAddon:getAddon"


@dataclass(frozen=True)
class Options:
    """What the engine receives besides the inputs (the mocks' new_resource never sees it)."""

    dependencies: tuple[str, ...] = ()  # names of the resources this one waits for
    protect: bool = False
    retain_on_delete: bool = False
    deleted_with: str = ""  # name of the resource it is deleted with, if any
    secret_inputs: frozenset[str] = frozenset()  # top-level inputs sent as secrets
    secret_values: tuple[tuple[str, Any], ...] = ()  # their values, unwrapped
    urn: str = ""
    parent: str = ""  # the parent's URN
    property_dependencies: tuple[tuple[str, tuple[str, ...]], ...] = ()  # property -> URNs
    raw_inputs: dict[str, Any] = field(default_factory=dict)  # as sent: unknowns, secrets


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    options: Options = field(default_factory=Options)


class InvokeError(grpc.RpcError):
    """A data source's failure as the engine returns it: a gRPC error, which the SDK raises
    as `Exception("invoke of TOKEN failed: DETAILS")` in the program (a plain exception
    from `Mocks.call` would count as a crash of the SDK instead)."""

    def __init__(self, token: str, details: str) -> None:
        super().__init__(details)
        self._details = f"invocation of {token} returned an error: {details}"

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


def _name_of(urn: str) -> str:
    return urn.rpartition("::")[2]


def _secret_inputs(obj: struct_pb2.Struct) -> frozenset[str]:
    return frozenset(
        key
        for key, value in obj.fields.items()
        if value.HasField("struct_value")
        and value.struct_value.fields.get(rpc._special_sig_key) is not None
        and value.struct_value.fields[rpc._special_sig_key].string_value == rpc._special_secret_sig
    )


def _options(request: Any, urn: str = "") -> Options:
    secret = _secret_inputs(request.object)
    return Options(
        urn=urn,
        parent=request.parent,
        property_dependencies=tuple(
            (key, tuple(deps.urns)) for key, deps in sorted(request.propertyDependencies.items())
        ),
        raw_inputs=json_format.MessageToDict(request.object),
        dependencies=tuple(_name_of(urn) for urn in request.dependencies),
        protect=bool(request.protect),
        retain_on_delete=bool(request.retainOnDelete),
        deleted_with=_name_of(request.deletedWith) if request.deletedWith else "",
        secret_inputs=secret,
        secret_values=tuple(
            (key, rpc.deserialize_property(request.object.fields[key].struct_value["value"]))
            for key in sorted(secret)
        ),
    )


# What the engine sends for a value not known yet (`pulumi preview`).
UNKNOWN = rpc.UNKNOWN


class RecordingMocks(pulumi.runtime.Mocks):
    """`oidc_providers`: url -> provider (arn, clientIdLists, tags), as IAM lists them;
    `addons`: the cluster's EKS add-ons by name.

    `preview`: as `pulumi preview` of a new stack: no resource has an id yet, what AWS
    computes (ARNs, a generated bucket name) is unknown, and the recorded inputs and outputs
    carry the engine's unknown sentinel wherever a value depends on one."""

    def __init__(self, *, preview: bool = False) -> None:
        self.preview = preview
        self.resources: list[Resource] = []
        self.calls: list[str] = []
        self.call_args: dict[str, dict[str, Any]] = {}
        self.pending: dict[tuple[str, str], Options] = {}
        self.oidc_providers: dict[str, dict[str, Any]] = {
            ISSUER: {"arn": OIDC_PROVIDER_ARN, "clientIdLists": ["sts.amazonaws.com"], "tags": {}}
        }
        self.addons: set[str] = {"eks-pod-identity-agent"}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if any(r.name == args.name and r.type == args.typ for r in self.resources):
            raise AssertionError(f"duplicate resource name {args.typ} {args.name}")
        options = self.pending.pop((args.typ, args.name), Options())
        if self.preview:
            computed = _computed_at_preview(args.typ, args.name, args.inputs)
            self.resources.append(
                Resource(
                    args.typ,
                    args.name,
                    options.raw_inputs,
                    {**options.raw_inputs, **computed},
                    options,
                )
            )
            return "", {**args.inputs, **computed}
        outputs = {**args.inputs, **_computed(args.typ, args.name, args.inputs)}
        # The mocks hand a provider's secret inputs over as the text of the wrapper: unwrap.
        inputs = {**args.inputs, **dict(options.secret_values)}
        self.resources.append(Resource(args.typ, args.name, inputs, outputs, options))
        # A bucket's id is its name, as in AWS (its protections name it in their `bucket`).
        resource_id = outputs["bucket"] if args.typ == "aws:s3/bucket:Bucket" else None
        return resource_id or f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(args.token)
        self.call_args[args.token] = dict(args.args)
        if args.token == OIDC_LOOKUP:
            # Like the provider's data source: https:// or not, the URL names one provider.
            url = "https://" + str(args.args["url"]).removeprefix("https://")
            found = self.oidc_providers.get(url)
            if found is None:
                raise InvokeError(args.token, "reading IAM OIDC Provider: couldn't find resource")
            return {**found, "url": url.removeprefix("https://"), "id": found["arn"]}, []
        if args.token == ADDON_LOOKUP:
            name = args.args["addonName"]
            if name not in self.addons:
                raise InvokeError(
                    args.token,
                    f"reading EKS Add-On ({args.args['clusterName']}:{name}): couldn't find"
                    " resource",
                )
            return {
                "addonName": name,
                "clusterName": args.args["clusterName"],
                "addonVersion": "v1.3.4-eksbuild.1",
                "arn": f"arn:aws:eks:eu-west-1:{ACCOUNT_ID}:addon/x/{name}/y",
                "id": f"{args.args['clusterName']}:{name}",
            }, []
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
        path = inputs.get("path") or "/"
        return {"name": name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role{path}{name}"}
    if typ == "aws:iam/policy:Policy":
        path = inputs.get("path") or "/"
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:policy{path}{name}"}
    if typ == "kubernetes:core/v1:Secret" and not inputs.get("metadata", {}).get("name"):
        # Pulumi auto-names a Kubernetes object without a name: the resource name + a suffix.
        return {"metadata": {**inputs.get("metadata", {}), "name": f"{name}-1a2b3c4d"}}
    if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        host = inputs["url"].removeprefix("https://")
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"}
    return {}


def _computed_at_preview(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a preview of a new stack knows of `_computed`: a configured bucket name and
    auto-names (assigned before the preview), never an ARN nor a generated bucket name."""
    if typ == "aws:s3/bucket:Bucket":
        return {"bucket": inputs.get("bucket") or UNKNOWN, "arn": UNKNOWN}
    return {
        key: value if key in ("name", "metadata") else UNKNOWN
        for key, value in _computed(typ, name, inputs).items()
    }


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.mocks.resources if r.type == typ]

    def named(self, name: str) -> Resource:
        (found,) = [r for r in self.mocks.resources if r.name == name]
        return found

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


def run_program(
    config: dict[str, Any],
    stack: str = "dev",
    *,
    secret_keys: tuple[str, ...] = (),
    mocks: RecordingMocks | None = None,
) -> ProgramRun:
    """Run `infra/` under mocks with this config; return resources and resolved outputs.

    `secret_keys`: config keys set with `pulumi config set --secret`, handed over the way the
    language host does (PULUMI_CONFIG_SECRET_KEYS)."""
    mocks = mocks or RecordingMocks()
    run = ProgramRun(mocks)
    exported: dict[str, Any] = {}
    pulumi.runtime.set_all_config(flatten(config), list(secret_keys))
    pulumi.runtime.set_mocks(mocks, project="satchel", stack=stack, preview=mocks.preview)
    original_export = pulumi.export
    pulumi.export = lambda name, value: exported.__setitem__(name, value)  # type: ignore[assignment]
    original_register = pulumi_mocks.MockMonitor.RegisterResource

    def register(monitor: Any, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            urn = monitor.make_urn(request.parent, request.type, request.name)
            mocks.pending[(request.type, request.name)] = _options(request, urn)
        return original_register(monitor, request)

    pulumi_mocks.MockMonitor.RegisterResource = register  # type: ignore[method-assign]

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
        pulumi_mocks.MockMonitor.RegisterResource = original_register  # type: ignore[method-assign]
        pulumi.runtime.set_all_config({}, [])
    return run
