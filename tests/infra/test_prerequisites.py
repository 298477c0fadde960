"""What a first real `pulumi up` needs from the machine, written where Pulumi and people look."""

from __future__ import annotations

import tomllib

from packaging.specifiers import SpecifierSet

from infra.config import ROOT, load_stack_config


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    return text[start : text.index("\n## ", start + 1)]


def test_python_version_names_a_python_the_package_accepts() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"{version}.0" in SpecifierSet(requires), (version, requires)


def test_the_readme_gives_the_python_and_the_aws_cli_as_prerequisites() -> None:
    section = _readme_section("Deploying for real")
    version = (ROOT / ".python-version").read_text().strip()
    assert f"PULUMI_PYTHON_CMD=python{version}" in section
    assert "aws eks get-token" in section and "The AWS CLI" in section
    assert "eksctl utils associate-iam-oidc-provider" in section


def test_the_dev_stack_creates_no_namespace_it_would_delete_on_destroy() -> None:
    assert load_stack_config("dev").create_namespace is False
    assert "change this one" in (ROOT / "Pulumi.dev.yaml").read_text()  # the global bucket name
