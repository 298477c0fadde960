"""Named sources from the flysystem-shaped config file (`SATCHEL_STORAGE_CONFIG`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runtime
from infra.local.seaweedfs import SeaweedFS
from runtime import ConfigError, load_settings
from runtime.specs import GcsSpec, S3Spec

SEED_FILE = Path(__file__).parent.parent / "examples" / "flysystem.yaml"


def _env(source: str, path: Path = SEED_FILE, **extra: str) -> dict[str, str]:
    return {"STORAGE_SOURCE": source, "SATCHEL_STORAGE_CONFIG": str(path), **extra}


def test_the_seed_file_loads_as_written_for_s3_v2_with_its_parameter_defaults() -> None:
    storages = load_settings(_env("s3_v2")).storages
    packages, artifacts = storages["packages"], storages["artifacts"]
    assert isinstance(packages, S3Spec) and isinstance(artifacts, S3Spec)
    assert (packages.bucket, packages.prefix) == ("packeton-bucket", "packeton")
    assert (artifacts.bucket, artifacts.prefix) == ("packeton-bucket", "artifact")
    assert packages.args.model_dump(exclude_defaults=True) == {}  # '[]' means no args


def test_env_references_win_over_parameter_defaults() -> None:
    args = '{"region": "eu-west-3", "endpoint": "https://s3.example.net"}'
    env = _env("s3_v2", STORAGE_AWS_BUCKET="my-bucket", STORAGE_AWS_ARGS=args)
    packages = load_settings(env).storages["packages"]
    assert isinstance(packages, S3Spec)
    assert packages.bucket == "my-bucket"
    assert packages.args.region == "eu-west-3"


def test_missing_mirror_entries_use_the_contract_prefixes_in_the_storage_bucket() -> None:
    env = _env("s3_v2", STORAGE_AWS_BUCKET="my-bucket", STORAGE_AWS_MIRROR_META_PREFIX="mm")
    storages = load_settings(env).storages
    assert storages["mirror_meta"] == S3Spec(
        bucket="my-bucket", prefix="mm", args=storages["packages"].args
    )  # type: ignore[union-attr]
    assert storages["mirror_dist"].prefix == "mirror-dist"


def test_the_seed_file_loads_as_written_for_gcloud() -> None:
    storages = load_settings(_env("gcloud")).storages
    assert storages["packages"] == GcsSpec(
        bucket="bucket_name", prefix="optional/path/prefix", key_file="path/to/keyfile.json"
    )
    assert storages["artifacts"].prefix == "optional/path/artifact"
    assert storages["mirror_meta"].prefix == "mirror-meta"


def test_a_missing_key_file_is_a_config_error_when_the_storage_opens() -> None:
    settings = load_settings(_env("gcloud"))
    with pytest.raises(ConfigError, match=r"keyFilePath 'path/to/keyfile\.json'"):
        runtime.open_storages(settings)


def test_a_source_the_file_does_not_define_names_the_file_and_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env("azure"))
    assert "SATCHEL_STORAGE_CONFIG" in str(caught.value)
    assert "'azure.storage'" in str(caught.value)


def test_the_builtin_sources_still_work_with_a_config_file() -> None:
    assert load_settings(_env("s3")).storages["packages"].kind == "s3"


def test_a_missing_config_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SATCHEL_STORAGE_CONFIG: cannot read"):
        load_settings(_env("gcloud", tmp_path / "nope.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "storage.yaml"
    path.write_text(text)
    return path


def _one_entry(adapter: str = "asyncaws", client: str = "svc", bucket: str = "b-1") -> str:
    return f"""
flysystem:
    storages:
        x.storage:
            adapter: '{adapter}'
            options: {{client: '{client}', bucket: '{bucket}', prefix: 'p'}}
services:
    svc:
        class: AsyncAws\\S3\\S3Client
        arguments: {{ $configuration: {{region: 'eu-west-1', colour: 'red'}} }}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_one_entry(adapter="ftp"), "flysystem.storages.x.storage.adapter: unknown adapter 'ftp'"),
        (_one_entry(client="nope"), "flysystem.storages.x.storage.options.client: service 'nope'"),
        (_one_entry(client=""), "flysystem.storages.x.storage.options.client is required"),
        (_one_entry(bucket=""), "flysystem.storages.x.storage.options.bucket: bucket name is"),
        (_one_entry(bucket="%env(NOPE_VAR)%"), "references %env(NOPE_VAR)% but NOPE_VAR"),
        (_one_entry(), "x.storage client configuration: unknown key 'colour'"),
        ("flysystem: [1, 2]", "flysystem must be a mapping"),
        ("flysystem: {storages: {x.storage: {adapter: 's3'\n", "is not valid YAML"),
    ],
)
def test_bad_config_lines_are_errors_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env("x", _write(tmp_path, text)))
    assert expected in str(caught.value)


def test_a_second_s3_client_from_the_file_reaches_seaweedfs(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """The seed's `s3_v2` source, credentials through %env(json:STORAGE_AWS_ARGS)%."""
    args = {
        "endpoint": seaweed.endpoint,
        "accessKeyId": seaweed.admin.access_key,
        "accessKeySecret": seaweed.admin.secret_key,
    }
    env = _env(
        "s3_v2",
        STORAGE_AWS_BUCKET=seaweed.bucket,
        STORAGE_AWS_PREFIX="s3v2-packages",
        STORAGE_AWS_ARGS=json.dumps(args),
    )
    storages = runtime.open_storages(load_settings(env))
    storages.packages.write("hello.txt", b"from s3_v2")
    storages.mirror_dist.write("hello.txt", b"mirror")
    admin = seaweed.admin_client()
    body = admin.get_object(Bucket=seaweed.bucket, Key="s3v2-packages/hello.txt")["Body"]
    assert body.read() == b"from s3_v2"
    assert admin.head_object(Bucket=seaweed.bucket, Key="mirror-dist/hello.txt")
