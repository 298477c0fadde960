"""`load_settings`: the env contract, its defaults, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import ConfigError, load_settings
from runtime.aws_args import ALLOWED_KEYS
from runtime.specs import LocalSpec, S3Spec

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token"

# The three STORAGE_AWS_ARGS examples of the Packeton storage docs.
OVH_ARGS = (
    '{"endpoint": "https://s3.waw.io.cloud.ovh.net", "accessKeyId": "xxx",'
    ' "accessKeySecret": "xxx", "region": "waw"}'
)
IRSA_EXPLICIT_ARGS = (
    '{"region": "us-east-1", "roleArn": "arn:aws:iam::123456789:role/packeton-s3-role",'
    ' "webIdentityTokenFile": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}'
)
IRSA_AUTO_ARGS = '{"region": "us-east-1"}'


def test_defaults_are_the_packeton_ones() -> None:
    settings = load_settings({})
    assert settings.source == "local"
    assert settings.bucket == "packeton-bucket"
    assert (settings.prefix, settings.artifact_prefix) == ("packeton", "artifact")
    assert (settings.mirror_meta_prefix, settings.mirror_dist_prefix) == (
        "mirror-meta",
        "mirror-dist",
    )
    assert settings.mirror_metadata_cache_dir is None
    assert settings.mirror_dist_cache_dir is None
    assert settings.aws_args.model_dump(exclude_defaults=True) == {}
    assert settings.storages["packages"] == LocalSpec(root=Path("var/storage"), prefix="packeton")


def test_load_settings_reads_os_environ_when_given_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_AWS_PREFIX", "from-os-environ")
    assert load_settings().prefix == "from-os-environ"


def test_the_ovh_example_loads_with_endpoint_keys_and_region() -> None:
    settings = load_settings({"STORAGE_SOURCE": "s3", "STORAGE_AWS_ARGS": OVH_ARGS})
    spec = settings.storages["packages"]
    assert isinstance(spec, S3Spec)
    assert spec.bucket == "packeton-bucket"
    assert spec.args.endpoint == "https://s3.waw.io.cloud.ovh.net"
    assert spec.args.region == "waw"
    assert spec.args.has_static_keys


def test_the_explicit_irsa_example_loads() -> None:
    settings = load_settings({"STORAGE_SOURCE": "s3", "STORAGE_AWS_ARGS": IRSA_EXPLICIT_ARGS})
    args = settings.aws_args
    assert args.role_arn == "arn:aws:iam::123456789:role/packeton-s3-role"
    assert args.web_identity_token_file == (
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    )
    assert not args.has_static_keys


def test_the_region_only_example_loads() -> None:
    assert load_settings({"STORAGE_AWS_ARGS": IRSA_AUTO_ARGS}).aws_args.region == "us-east-1"


@pytest.mark.parametrize("empty", ["[]", "{}", "", "  "])
def test_empty_aws_args_forms_mean_no_args(empty: str) -> None:
    assert load_settings({"STORAGE_AWS_ARGS": empty}).aws_args.region is None


def test_the_stateless_mirror_example_leaves_caches_off() -> None:
    env = {"STORAGE_SOURCE": "s3", "MIRROR_METADATA_CACHE_DIR": "", "MIRROR_DIST_CACHE_DIR": ""}
    settings = load_settings(env)
    assert settings.mirror_metadata_cache_dir is None
    assert settings.mirror_dist_cache_dir is None


def test_the_tmp_cache_mirror_example_sets_both_cache_dirs() -> None:
    env = {
        "STORAGE_SOURCE": "s3",
        "MIRROR_METADATA_CACHE_DIR": "/tmp/mirror-meta",
        "MIRROR_DIST_CACHE_DIR": "/tmp/mirror-dist",
    }
    settings = load_settings(env)
    assert settings.mirror_metadata_cache_dir == Path("/tmp/mirror-meta")
    assert settings.mirror_dist_cache_dir == Path("/tmp/mirror-dist")


def test_prefixes_are_normalised() -> None:
    settings = load_settings({"STORAGE_AWS_PREFIX": "/a\\b/", "STORAGE_AWS_ARTIFACT_PREFIX": ""})
    assert settings.prefix == "a/b"
    assert settings.artifact_prefix == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "STORAGE_AWS_ARGS is not valid JSON"),
        ('["region"]', "STORAGE_AWS_ARGS must be a JSON object, got list"),
        ('"us-east-1"', "STORAGE_AWS_ARGS must be a JSON object, got str"),
        ('{"bucket": "x"}', "STORAGE_AWS_ARGS: unknown key 'bucket'; allowed keys: "),
        ('{"pathStyleEndpoint": "yes"}', "STORAGE_AWS_ARGS: pathStyleEndpoint: expected true or"),
        ('{"region": 5}', "STORAGE_AWS_ARGS: region: "),
        ('{"endpoint": "s3.example.com"}', "STORAGE_AWS_ARGS: endpoint: expected an http"),
        ('{"accessKeyId": "AKIA"}', "accessKeyId and accessKeySecret go together"),
    ],
)
def test_bad_aws_args_name_the_variable_and_key(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"STORAGE_AWS_ARGS": raw})
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_key_error_lists_every_allowed_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"STORAGE_AWS_ARGS": '{"secretKey": "x"}'})
    for key in ALLOWED_KEYS:
        assert key in str(caught.value)
    assert "stsEndpoint" in ALLOWED_KEYS and "profile" in ALLOWED_KEYS


def test_path_style_endpoint_accepts_booleans_and_their_strings() -> None:
    for raw, expected in (("true", True), ('"true"', True), ('"false"', False), ("false", False)):
        args = load_settings({"STORAGE_AWS_ARGS": f'{{"pathStyleEndpoint": {raw}}}'}).aws_args
        assert args.path_style_endpoint is expected, raw


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"accessKeyId": "AKIA", "accessKeySecret": SECRET, "sessionToken": TOKEN}),
        json.dumps({"accessKeyId": "AKIA", "accessKeySecret": SECRET, "sessionToken": 5}),
        json.dumps({"accessKeyId": "AKIA", "accessKeySecret": [SECRET]}),
        '{"accessKeyId": "AKIA", "accessKeySecret": "' + SECRET + '", oops}',
    ],
)
def test_secrets_never_appear_in_reprs_dumps_or_errors(raw: str) -> None:
    try:
        settings = load_settings({"STORAGE_SOURCE": "s3", "STORAGE_AWS_ARGS": raw})
    except ConfigError as exc:
        shown = str(exc) + repr(exc)
    else:
        shown = repr(settings) + str(settings) + json.dumps(settings.public_env())
        shown += repr(settings.storages) + str(settings.aws_args.public_dict())
    assert SECRET not in shown
    assert TOKEN not in shown


def test_the_secret_is_still_available_to_the_client_code() -> None:
    raw = json.dumps({"accessKeyId": "AKIA", "accessKeySecret": SECRET})
    secret = load_settings({"STORAGE_AWS_ARGS": raw}).aws_args.access_key_secret
    assert secret is not None and secret.get_secret_value() == SECRET


@pytest.mark.parametrize("source", ["gcloud", "s3_v2", "ftp"])
def test_an_unknown_source_without_config_file_names_the_config_variable(source: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"STORAGE_SOURCE": source})
    assert f"STORAGE_SOURCE={source!r}" in str(caught.value)
    assert "SATCHEL_STORAGE_CONFIG" in str(caught.value)


def test_an_empty_source_is_an_error() -> None:
    with pytest.raises(ConfigError, match="STORAGE_SOURCE is empty"):
        load_settings({"STORAGE_SOURCE": " "})


@pytest.mark.parametrize("bucket", ["", "ab", "Upper-Case", "has space", "a/b", "x" * 64])
def test_bad_bucket_names_are_errors_naming_the_variable(bucket: str) -> None:
    with pytest.raises(ConfigError, match="STORAGE_AWS_BUCKET: bucket name is"):
        load_settings({"STORAGE_SOURCE": "s3", "STORAGE_AWS_BUCKET": bucket})


@pytest.mark.parametrize("prefix", ["../up", "a\x00b"])
def test_bad_prefixes_are_errors_naming_the_variable(prefix: str) -> None:
    with pytest.raises(ConfigError, match="STORAGE_AWS_MIRROR_DIST_PREFIX: "):
        load_settings({"STORAGE_AWS_MIRROR_DIST_PREFIX": prefix})
