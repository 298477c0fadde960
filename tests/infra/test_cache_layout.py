"""The cache bounds in the env (infra/cache_layout.py): on every emptyDir of the pod, the
caches living there are bounded to its sizeLimit less headroom, so kubelet never evicts it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

import runtime
from infra.cache_layout import (
    DIST_CACHE_SIZE_VAR,
    LARGE_DOWNLOAD,
    METADATA_CACHE_SIZE_VAR,
    MIB,
    Volume,
    cache_bounds,
    cache_volumes,
    parse_quantity,
)
from infra.config import ConfigKeyError, parse_stack_config
from tests.infra.harness import run_program, stack_config_with


@dataclass(frozen=True)
class Dirs:
    mirror_metadata_cache_dir: str = ""
    mirror_dist_cache_dir: str = ""
    app_cache_size_limit: str = "2Gi"


def _bytes(value: str) -> int:
    assert value.endswith("M")
    return int(value[:-1]) * MIB  # the runtime's M is binary (ByteSize)


def test_the_dev_stacks_configmap_bounds_both_caches_within_the_tmp_volume() -> None:
    run = run_program(stack_config_with("dev", deployApp=True, appImage="img"))
    env = run.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    pod = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]
    (volume,) = pod["volumes"]
    limit = parse_quantity(volume["emptyDir"]["sizeLimit"])
    meta, dist = env[METADATA_CACHE_SIZE_VAR], env[DIST_CACHE_SIZE_VAR]
    assert _bytes(meta) + _bytes(dist) <= limit - max(limit // 5, LARGE_DOWNLOAD)
    # Read back by the runtime as the same numbers (what the app enforces).
    settings = runtime.load_settings(env)
    assert settings.mirror_dist_cache_size == _bytes(dist)
    assert env == run.outputs["env"]


def test_caches_on_volumes_of_their_own_get_each_volume_less_headroom() -> None:
    dirs = Dirs("/cache/meta", "/cache/dist", "5Gi")
    assert cache_volumes(dirs) == [
        Volume("mirror-meta-cache", "/cache/meta", (METADATA_CACHE_SIZE_VAR,)),
        Volume("mirror-dist-cache", "/cache/dist", (DIST_CACHE_SIZE_VAR,)),
        Volume("tmp", "/tmp", ()),
    ]
    budget = 5 * 1024 - 1024  # 20% of 5Gi is more than one large download
    assert cache_bounds(dirs) == {
        METADATA_CACHE_SIZE_VAR: f"{budget}M",
        DIST_CACHE_SIZE_VAR: f"{budget}M",
    }


def test_no_cache_dir_no_bound_and_the_tmp_volume_stays_for_spooled_downloads() -> None:
    assert cache_bounds(Dirs()) == {}
    assert cache_volumes(Dirs()) == [Volume("tmp", "/tmp", ())]
    assert cache_bounds(Dirs(mirror_dist_cache_dir="/tmp/dist")) == {
        DIST_CACHE_SIZE_VAR: "1638M"  # 2048 MiB less 20%, rounded down
    }


def test_a_small_volume_keeps_at_least_one_large_download_free() -> None:
    bounds = cache_bounds(Dirs("/tmp/meta", "/tmp/dist", "1Gi"))
    used = sum(_bytes(value) for value in bounds.values())
    assert used <= 1024 * MIB - LARGE_DOWNLOAD


def test_a_volume_too_small_for_the_caches_is_a_config_error_naming_the_size_needed() -> None:
    with pytest.raises(ConfigKeyError, match=r"^satchel:appCacheSizeLimit: 512Mi leaves") as exc:
        parse_stack_config(stack_config_with("dev", appCacheSizeLimit="512Mi"))
    assert "use at least 576Mi" in str(exc.value)
    parse_stack_config(stack_config_with("dev", appCacheSizeLimit="576Mi"))


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("2Gi", 2 << 30), ("1536Mi", 1536 << 20), ("2G", 2 * 10**9), ("1.5Gi", 3 << 29), ("100", 100)],
)
def test_kubernetes_quantities_are_read_with_their_own_units(quantity: str, size: int) -> None:
    assert parse_quantity(quantity) == size


def test_a_size_limit_that_is_no_quantity_fails_with_its_key() -> None:
    with pytest.raises(ConfigKeyError, match=r"^satchel:appCacheSizeLimit: .*Kubernetes quantity"):
        parse_stack_config(stack_config_with("dev", appCacheSizeLimit="2 GB"))


@given(
    limit_mib=st.integers(min_value=600, max_value=1 << 20),
    meta=st.sampled_from(["", "/tmp/meta", "/cache/meta", "/cache"]),
    dist=st.sampled_from(["", "/tmp/dist", "/cache/dist", "/cache/x/dist"]),
)
def test_on_every_volume_the_bounds_sum_to_at_most_the_limit_less_headroom(
    limit_mib: int, meta: str, dist: str
) -> None:
    dirs = Dirs(meta, dist, f"{limit_mib}Mi")
    limit = limit_mib * MIB
    bounds = cache_bounds(dirs)
    for volume in cache_volumes(dirs):
        used = sum(_bytes(bounds[var]) for var in volume.caches)
        assert used <= limit - max(int(limit * 0.2), LARGE_DOWNLOAD)
    assert set(bounds) == {
        var for var, path in ((METADATA_CACHE_SIZE_VAR, meta), (DIST_CACHE_SIZE_VAR, dist)) if path
    }
