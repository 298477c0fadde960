"""`satchel:index:AppKubernetes`: the app's namespace, ServiceAccount and env ConfigMap.

The namespace is created only with `createNamespace` (it usually exists, with more in it than
this stack's objects). With `adoptExistingObjects` (and the provider's upsert) an existing
namespace or ServiceAccount is taken over instead of failing with AlreadyExists, and kept on
destroy: it was there before this stack and may still be used by others.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"


class AppKubernetes(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        provider: k8s.Provider,
        role_arn: pulumi.Input[str],
        env: pulumi.Input[dict[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("satchel:index:AppKubernetes", name, None, opts)
        labels = {"app.kubernetes.io/name": "satchel", "app.kubernetes.io/managed-by": "pulumi"}
        adopted = config.adopt_existing_objects
        depends: list[pulumi.Resource] = []
        if config.create_namespace:
            depends.append(
                k8s.core.v1.Namespace(
                    f"{name}-namespace",
                    metadata={"name": config.namespace, "labels": labels},
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=provider, retain_on_delete=adopted
                    ),
                )
            )
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=depends)
        annotations = {IRSA_ANNOTATION: role_arn} if config.identity_mode == "irsa" else {}
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={
                "name": config.service_account,
                "namespace": config.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(retain_on_delete=adopted)
            ),
        )
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-env",
            metadata={
                "name": f"{config.service_account}-env",
                "namespace": config.namespace,
                "labels": labels,
            },
            data=env,
            opts=child,
        )
        self.register_outputs(
            {
                "serviceAccount": self.service_account.metadata["name"],
                "configMap": self.config_map.metadata["name"],
            }
        )
