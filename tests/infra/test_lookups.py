"""What must exist before `pulumi up` (infra/lookups.py): the cluster's IAM OIDC provider and,
for Pod Identity, the agent add-on. A missing piece stops the program before any resource,
with the fix in the message."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.infra.harness import (
    ADDON_LOOKUP,
    ISSUER,
    OIDC_LOOKUP,
    OIDC_PROVIDER_ARN,
    RecordingMocks,
    run_program,
    stack_config_with,
)

OIDC = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
OWNER = "organization/satchel/dev"  # organization (as on a diy backend), project, stack


def _without_provider() -> RecordingMocks:
    mocks = RecordingMocks()
    mocks.oidc_providers.clear()
    return mocks


def _stops_before_any_resource(
    mocks: RecordingMocks, message: str, **changes: Any
) -> pytest.ExceptionInfo[Exception]:
    with pytest.raises(Exception, match=message) as excinfo:
        run_program(stack_config_with("dev", **changes), mocks=mocks)
    assert mocks.resources == [], [r.name for r in mocks.resources]
    return excinfo


def test_the_role_trusts_the_arn_of_the_provider_iam_has_for_the_issuer() -> None:
    mocks = RecordingMocks()
    # Not the ARN the issuer's host would give: the lookup's answer is what counts.
    mocks.oidc_providers[ISSUER]["arn"] = OIDC_PROVIDER_ARN.replace("123456789012", "210987654321")
    run = run_program(stack_config_with("dev"), mocks=mocks)
    assert mocks.call_args[OIDC_LOOKUP]["url"] == ISSUER
    role = run.one("aws:iam/role:Role")
    assert "210987654321:oidc-provider/" in role.inputs["assumeRolePolicy"]
    assert not run.of_type(OIDC)


def test_a_missing_oidc_provider_stops_up_with_the_eksctl_and_create_fixes() -> None:
    excinfo = _stops_before_any_resource(
        _without_provider(), "satchel:createOidcProvider: account 123456789012 has no IAM OIDC"
    )
    message = str(excinfo.value)
    assert "eksctl utils associate-iam-oidc-provider --cluster packeton-dev --approve" in message
    assert "satchel:createOidcProvider true" in message
    assert "couldn't find resource" in message  # the lookup's own words


def test_a_provider_without_the_sts_audience_is_refused_with_the_fix() -> None:
    mocks = RecordingMocks()
    mocks.oidc_providers[ISSUER]["clientIdLists"] = ["other"]
    excinfo = _stops_before_any_resource(mocks, "does not accept the audience sts.amazonaws.com")
    assert "add-client-id-to-open-id-connect-provider" in str(excinfo.value)


def test_a_created_provider_is_tagged_with_the_stack_and_kept_on_destroy() -> None:
    run = run_program(stack_config_with("dev", createOidcProvider=True), mocks=_without_provider())
    provider = run.one(OIDC)
    assert provider.options.retain_on_delete is True
    assert provider.inputs["tags"]["satchel:stack"] == OWNER
    role = run.one("aws:iam/role:Role")
    assert provider.outputs["arn"] in role.inputs["assumeRolePolicy"]


def test_creating_a_provider_that_exists_already_is_refused_unless_this_stack_made_it() -> None:
    excinfo = _stops_before_any_resource(
        RecordingMocks(), "exists already", createOidcProvider=True
    )
    assert "set satchel:createOidcProvider false" in str(excinfo.value)
    assert "EntityAlreadyExists" in str(excinfo.value)
    # The stack's own provider, found on its next `up`: still declared, still managed.
    mocks = RecordingMocks()
    mocks.oidc_providers[ISSUER]["tags"] = {"satchel:stack": OWNER}
    run = run_program(stack_config_with("dev", createOidcProvider=True), mocks=mocks)
    assert run.one(OIDC).options.retain_on_delete is True


def test_pod_identity_checks_the_agent_add_on_on_the_cluster() -> None:
    run = run_program(stack_config_with("dev", identityMode="pod-identity"))
    assert run.mocks.call_args[ADDON_LOOKUP] == {
        "addonName": "eks-pod-identity-agent",
        "clusterName": "packeton-dev",
    }
    assert OIDC_LOOKUP not in run.mocks.calls  # no OIDC provider needed for Pod Identity


def test_pod_identity_without_the_agent_stops_up_with_the_install_command() -> None:
    mocks = RecordingMocks()
    mocks.addons.clear()
    excinfo = _stops_before_any_resource(
        mocks,
        re.escape("satchel:identityMode: pod-identity needs the eks-pod-identity-agent add-on"),
        identityMode="pod-identity",
    )
    assert (
        "aws eks create-addon --cluster-name packeton-dev --addon-name eks-pod-identity-agent"
        in str(excinfo.value)
    )
