"""What the stack needs to exist in the account and cluster already, looked up before any
resource is declared, so that a missing piece stops `pulumi up` with what to do instead of a
half-made stack and an AWS error code.

A failed lookup raises a plain `Exception("invoke of TOKEN failed: ...")` in the Pulumi SDK,
whatever the cause (not found, access denied): its text is quoted in our message.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.identity import OWNER_TAG
from infra.config import StackConfig
from infra.policies import STS_AUDIENCE

POD_IDENTITY_AGENT = "eks-pod-identity-agent"


def _cause(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def oidc_provider_arn(
    config: StackConfig, issuer_url: str, *, account_id: str, owner: str
) -> str | None:
    """The ARN of the issuer's IAM OIDC provider, or None when this stack is to create it."""
    cluster = config.cluster_name or "CLUSTER"
    try:
        found = aws.iam.get_open_id_connect_provider(url=issuer_url)
    except Exception as exc:
        if config.create_oidc_provider:
            return None
        raise pulumi.RunError(
            f"satchel:createOidcProvider: account {account_id} has no IAM OIDC provider for"
            f" the cluster's issuer {issuer_url}, so no pod could assume the role (IAM"
            " refuses a trust policy naming a missing provider). Create it once per cluster:"
            f" `eksctl utils associate-iam-oidc-provider --cluster {cluster} --approve`, or"
            " set satchel:createOidcProvider true to let this stack create it (it is kept on"
            f" destroy). The lookup said: {_cause(exc)}"
        ) from None
    if config.create_oidc_provider and (found.tags or {}).get(OWNER_TAG) != owner:
        raise pulumi.RunError(
            f"satchel:createOidcProvider: the cluster's IAM OIDC provider exists already"
            f" ({found.arn}), shared by every IRSA role on the cluster, and this stack did not"
            " create it: set satchel:createOidcProvider false to use it (creating it again"
            " fails with EntityAlreadyExists)"
        )
    if config.create_oidc_provider:
        return None  # this stack's own provider: keep declaring it
    if STS_AUDIENCE not in (found.client_id_lists or []):
        raise pulumi.RunError(
            f"satchel:oidcIssuerUrl: the IAM OIDC provider {found.arn} does not accept the"
            f" audience {STS_AUDIENCE}, so STS would refuse the pods' tokens: `aws iam"
            f" add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn"
            f" {found.arn} --client-id {STS_AUDIENCE}`"
        )
    return found.arn


def check_pod_identity_agent(config: StackConfig) -> None:
    """Pod Identity needs the agent add-on: without it pods silently get the node's role."""
    assert config.cluster_name is not None
    try:
        aws.eks.get_addon(addon_name=POD_IDENTITY_AGENT, cluster_name=config.cluster_name)
    except Exception as exc:
        raise pulumi.RunError(
            f"satchel:identityMode: pod-identity needs the {POD_IDENTITY_AGENT} add-on on"
            f" cluster {config.cluster_name}, which it does not have (the lookup said:"
            f" {_cause(exc)}). Install it: `aws eks create-addon --cluster-name"
            f" {config.cluster_name} --addon-name {POD_IDENTITY_AGENT}`, or use identityMode"
            " irsa"
        ) from None
