"""`satchel:index:AppIdentity`: the IAM role the app's pods assume, and its storage policy.

irsa: a role trusting the cluster's IAM OIDC provider for exactly one service account. The
provider is the cluster's, shared by every IRSA role on it: the program looks it up
(infra/lookups.py) and passes its ARN; only with `createOidcProvider` does this component
create it, tagged with the stack and kept on destroy. pod-identity: a role trusting the EKS
pods service and a PodIdentityAssociation for the same service account.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.config import StackConfig
from infra.policies import (
    STS_AUDIENCE,
    TrustSpec,
    permission_policy,
    pod_identity_trust_policy,
    trust_policy,
)

# On a provider this stack created: which stack owns it (infra/lookups.py reads it back).
OWNER_TAG = "satchel:stack"


class AppIdentity(pulumi.ComponentResource):
    role: aws.iam.Role
    role_arn: pulumi.Output[str]  # resolves only once the policy is attached
    pod_identity: aws.eks.PodIdentityAssociation | None

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        bucket_name: pulumi.Input[str],
        issuer_url: str | None,
        oidc_provider_arn: str | None,
        owner: str,
        partition: str = "aws",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`oidc_provider_arn`: the cluster's existing provider, or None to create it
        (`createOidcProvider`); `owner`: the stack's name for the provider's owner tag."""
        super().__init__("satchel:index:AppIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.pod_identity = None

        if config.identity_mode == "irsa":
            assert issuer_url is not None
            trust = self._irsa_trust(name, config, issuer_url, oidc_provider_arn, owner)
        else:
            scoped = config.pod_identity_trust_conditions
            document = pod_identity_trust_policy(
                config.namespace if scoped else None, config.service_account if scoped else None
            )
            trust = pulumi.Output.from_input(json.dumps(document))

        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=trust,
            description=(
                f"Storage access for {config.namespace}/{config.service_account}"
                f" ({config.identity_mode})"
            ),
            path=config.role_path,
            permissions_boundary=config.permissions_boundary_arn,
            max_session_duration=config.max_session_duration,
            tags=config.tags,
            opts=child,
        )
        self.policy = aws.iam.Policy(
            f"{name}-storage-policy",
            description="Objects under the app's four prefixes; listing of its bucket only",
            path=config.role_path,
            policy=pulumi.Output.from_input(bucket_name).apply(
                lambda bucket: json.dumps(
                    permission_policy(
                        bucket, list(config.prefixes.values()), config.kms_key_arn, partition
                    )
                )
            ),
            tags=config.tags,
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-storage-policy-attachment",
            role=self.role.name,
            policy_arn=self.policy.arn,
            opts=child,
        )
        depends: list[pulumi.CustomResource] = [attachment]
        if config.identity_mode == "pod-identity":
            assert config.cluster_name is not None
            self.pod_identity = aws.eks.PodIdentityAssociation(
                f"{name}-pod-identity",
                cluster_name=config.cluster_name,
                namespace=config.namespace,
                service_account=config.service_account,
                role_arn=self.role.arn,
                tags=config.tags,
                opts=child,
            )
            depends.append(self.pod_identity)
        # Pods must not get the ARN before the role can do anything.
        self.role_arn = pulumi.Output.all(
            self.role.arn, *[resource.id for resource in depends]
        ).apply(lambda values: str(values[0]))
        self.register_outputs({"roleArn": self.role_arn})

    def _irsa_trust(
        self,
        name: str,
        config: StackConfig,
        issuer_url: str,
        existing_provider_arn: str | None,
        owner: str,
    ) -> pulumi.Output[str]:
        issuer = pulumi.Output.from_input(issuer_url)
        if existing_provider_arn is None:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-oidc-provider",
                url=issuer,
                client_id_lists=[STS_AUDIENCE],
                tags={**config.tags, OWNER_TAG: owner},
                # The cluster's provider serves every IRSA role on it: destroying this stack
                # must not break the others. `pulumi destroy` leaves it in the account.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            provider_arn: pulumi.Output[str] = provider.arn
        else:
            provider_arn = pulumi.Output.from_input(existing_provider_arn)

        def render(values: list[str]) -> str:
            spec = TrustSpec(
                issuer_url=values[0],
                provider_arn=values[1],
                namespace=config.namespace,
                service_accounts=(config.service_account,),
            )
            return json.dumps(trust_policy(spec, "aws"))

        return pulumi.Output.all(issuer, provider_arn).apply(render)
