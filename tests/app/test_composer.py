"""The Composer protocol pieces, on plain documents."""

from __future__ import annotations

import json

import pytest

from runtime.app.composer import (
    Dist,
    RootInfo,
    dist_file,
    is_dist_file,
    load_root,
    parse_upstream_root,
    render,
    render_root,
    rewrite_p2,
)

REF_A, REF_B = "a" * 40, "b" * 40


def p2(*versions: dict[str, object]) -> bytes:
    return json.dumps({"packages": {"acme/x": list(versions)}, "minified": "composer/2.0"}).encode()


def test_rewriting_points_zip_and_tar_dists_at_the_mirror_and_keeps_the_rest() -> None:
    body = p2(
        {
            "version": "2.0.0",
            "dist": {
                "type": "zip",
                "url": "https://up/x-2.zip",
                "reference": REF_B,
                "shasum": "s2",
            },
        },
        {
            "version": "1.0.0",
            "dist": {"type": "tar", "url": "https://up/x-1.tar", "reference": REF_A},
        },
        {"version": "0.9.0", "dist": {"type": "xz", "url": "https://up/x.xz", "reference": REF_A}},
        {"version": "0.1.0", "dist": "__unset"},
    )
    stored, dists = rewrite_p2("up", body)
    versions = json.loads(stored)["packages"]["acme/x"]
    assert versions[0]["dist"] == {
        "type": "zip",
        "url": f"satchel-mirror:/dists/up/acme/x/2.0.0-{REF_B}.zip",
        "reference": REF_B,
        "shasum": "s2",
    }
    assert versions[1]["dist"]["url"] == f"satchel-mirror:/dists/up/acme/x/1.0.0-{REF_A}.tar"
    assert versions[2]["dist"]["url"] == "https://up/x.xz"  # a type the mirror does not store
    assert versions[3]["dist"] == "__unset"
    assert json.loads(stored)["minified"] == "composer/2.0"
    assert dists == {
        f"acme/x/2.0.0-{REF_B}.zip": Dist("https://up/x-2.zip", "s2"),
        f"acme/x/1.0.0-{REF_A}.tar": Dist("https://up/x-1.tar", None),
    }


def test_a_minified_version_without_dist_inherits_a_rewritten_url() -> None:
    dist = {"type": "zip", "url": "https://up/x.zip", "reference": REF_A}
    stored, _ = rewrite_p2("up", p2({"version": "1.0.1", "dist": dist}, {"version": "1.0.0"}))
    versions = json.loads(stored)["packages"]["acme/x"]
    assert "dist" not in versions[1]  # Composer expands it from the previous version
    assert versions[0]["dist"]["url"].startswith("satchel-mirror:/dists/up/")


def test_a_document_that_is_not_p2_is_refused() -> None:
    with pytest.raises(ValueError, match="p2"):
        rewrite_p2("up", b'{"providers": {}}')


def test_dist_file_names_are_safe_and_distinct() -> None:
    assert dist_file("1.2.3", REF_A, "u", "zip") == f"1.2.3-{REF_A}.zip"
    slash, underscore = (dist_file(v, REF_A, "u", "zip") for v in ("dev-a/b", "dev-a_b"))
    assert "/" not in slash and slash != underscore
    assert dist_file("1.0", None, "https://up/1", "zip") != dist_file(
        "1.0", None, "https://up/2", "zip"
    )
    dots = dist_file("..", "..", "u", "zip")  # one path segment, never a parent reference
    assert "/" not in dots and dots not in ("..", ".")
    assert all(is_dist_file(name) for name in (slash, underscore, dots))
    assert not is_dist_file("x.zip\n") and not is_dist_file("a/b.zip") and not is_dist_file("x.rar")


def test_rendering_puts_the_base_url_in_and_escapes_it_for_json() -> None:
    stored, _ = rewrite_p2(
        "up",
        p2({"version": "1", "dist": {"type": "zip", "url": "https://u/x", "reference": REF_A}}),
    )
    url = json.loads(render(stored, "https://m.example/sub"))["packages"]["acme/x"][0]["dist"][
        "url"
    ]
    assert url == f"https://m.example/sub/dists/up/acme/x/1-{REF_A}.zip"
    odd = json.loads(render(stored, 'http://h"x'))["packages"]["acme/x"][0]["dist"]["url"]
    assert odd.startswith('http://h"x/dists/')
    assert render(b'{"packages":{}}', "http://m") == b'{"packages":{}}'


def test_an_upstream_root_resolves_its_metadata_url_and_keeps_availability() -> None:
    body = json.dumps(
        {
            "packages": [],
            "metadata-url": "/p2/%package%.json",
            "providers-url": "/p/%package%$%hash%.json",
            "available-packages": ["Acme/B", "acme/a"],
        }
    ).encode()
    root = load_root(parse_upstream_root("https://repo.example.com/composer", body))
    assert root.metadata_url == "https://repo.example.com/p2/%package%.json"
    assert root.available_packages == ("acme/a", "acme/b")
    assert root.p2_url("acme/a", dev=True) == "https://repo.example.com/p2/acme/a~dev.json"
    with pytest.raises(ValueError, match="v2"):
        parse_upstream_root("https://r", b'{"packages": [], "providers-url": "/p/x"}')


def test_availability_patterns_match_like_composer() -> None:
    root = RootInfo("u", available_patterns=("acme/*",))
    assert root.allows("acme/anything") and not root.allows("other/x")
    assert RootInfo("u").allows("any/thing")


def test_the_mirror_root_lists_availability_only_when_every_upstream_restricts() -> None:
    a = RootInfo("u", available_packages=("a/x",))
    b = RootInfo("u", available_patterns=("b/*",))
    both = json.loads(render_root("http://m/p2/%package%.json", [a, b]))
    assert both == {
        "packages": [],
        "metadata-url": "http://m/p2/%package%.json",
        "available-packages": ["a/x"],
        "available-package-patterns": ["b/*"],
    }
    assert "available-packages" not in json.loads(render_root("m", [a, RootInfo("u")]))
    assert "available-packages" not in json.loads(render_root("m", [a, None]))
