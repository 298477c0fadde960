"""The local target: EKS + IAM + S3 on 127.0.0.1, provisioned from the stack config.

A local OIDC issuer stands in for the cluster's, a token file written here stands in for
kubelet's projected token, and SeaweedFS plays S3 + STS with the OIDC provider, the role and
its permission policy loaded from the same policy module the Pulumi program uses.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import StackConfig
from infra.local.oidc import OidcIssuer, SigningKey, write_token
from infra.local.seaweedfs import AdminIdentity, SeaweedFS
from infra.outputs import app_env, dotenv, stack_outputs
from infra.policies import (
    STS_AUDIENCE,
    TrustSpec,
    oidc_provider_arn,
    permission_policy,
    trust_policy,
)

ACCOUNT_ID = "000000000000"
POLICY_NAME = "satchel-storage"


@dataclass
class LocalTarget:
    """One local stack. `up()` starts it, `down()` stops every process it started."""

    config: StackConfig
    state_dir: Path
    stack: str = "dev"
    token_duration: str = "1h"  # SeaweedFS session length (the whole instance)
    token_lifetime: float = 3600  # lifetime of the pod's projected tokens
    issuer: OidcIssuer = field(default_factory=OidcIssuer)
    seaweed: SeaweedFS | None = None

    def __post_init__(self) -> None:
        # The pod env names the token file: it must not depend on the reader's directory.
        self.state_dir = self.state_dir.resolve()

    @property
    def bucket(self) -> str:
        return self.config.bucket_name or f"{self.config.bucket_name_prefix}{self.stack}"

    @property
    def role_name(self) -> str:
        return f"{self.config.service_account}-{self.stack}-storage"

    @property
    def role_arn(self) -> str:
        # IAM puts the role's path (satchel:rolePath) between `role` and its name.
        return f"arn:aws:iam::{ACCOUNT_ID}:role{self.config.role_path}{self.role_name}"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "serviceaccount" / "token"

    @property
    def outputs_file(self) -> Path:
        return self.state_dir / "outputs.json"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "pod.env"

    @property
    def endpoint(self) -> str:
        assert self.seaweed is not None, "the target is not up"
        return self.seaweed.endpoint

    def trust_spec(self) -> TrustSpec:
        return TrustSpec(
            issuer_url=self.issuer.url,
            provider_arn=oidc_provider_arn(self.issuer.url, ACCOUNT_ID),
            namespace=self.config.namespace,
            service_accounts=(self.config.service_account,),
        )

    def iam_config(self) -> dict[str, Any]:
        """SeaweedFS's advanced IAM: STS, the OIDC provider, the role and its policy."""
        spec = self.trust_spec()
        return {
            "sts": {
                "tokenDuration": self.token_duration,
                # The role's maxSessionDuration; SeaweedFS has one bound for all its roles.
                "maxSessionLength": f"{self.config.max_session_duration}s",
                "issuer": "seaweedfs-sts",
                "accountId": ACCOUNT_ID,
                "signingKey": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
            "providers": [
                {
                    # Named like the AWS provider ARN so the AWS-shaped principal matches.
                    "name": spec.provider_arn,
                    "type": "oidc",
                    "enabled": True,
                    "config": {
                        "issuer": spec.issuer_url,
                        "clientIds": [spec.audience],
                        "jwksUri": f"{spec.issuer_url}/keys",
                        "jwksCacheTTLSeconds": 300,
                    },
                }
            ],
            "policy": {"defaultEffect": "Deny"},
            "roles": [
                {
                    # SeaweedFS names a role by all that follows `role/` in its ARN: the
                    # path too, so the AWS-shaped ARN (with satchel:rolePath) resolves.
                    "roleName": self.role_arn.partition(":role/")[2],
                    "roleArn": self.role_arn,
                    "trustPolicy": trust_policy(spec, "seaweedfs"),
                    "attachedPolicies": [POLICY_NAME],
                }
            ],
            "policies": [
                {
                    "name": POLICY_NAME,
                    "document": permission_policy(
                        self.bucket,
                        list(self.config.prefixes.values()),
                        self.config.kms_key_arn,
                    ),
                }
            ],
        }

    def up(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.issuer.start()
        try:
            self.seaweed = SeaweedFS(
                run_dir=self.state_dir / "seaweedfs",
                bucket=self.bucket,
                admin=AdminIdentity(access_key="satchel-admin", secret_key=secrets.token_hex(20)),
                iam=self.iam_config(),
            )
            self.seaweed.start()
            self.rotate_token()
            self._write_outputs()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        if self.seaweed is not None:
            self.seaweed.stop()
        self.issuer.stop()

    # -- what `pulumi stack output` and a pod would see -------------------------------

    def app_env(self) -> dict[str, str]:
        return app_env(self.config, self.bucket, endpoint=self.endpoint, sts_endpoint=self.endpoint)

    def outputs(self) -> dict[str, Any]:
        return stack_outputs(
            self.config,
            bucket_name=self.bucket,
            bucket_arn=f"arn:aws:s3:::{self.bucket}",
            role_arn=self.role_arn,
            env=self.app_env(),
        )

    def pod_env(self) -> dict[str, str]:
        """The ConfigMap's env plus what the EKS pod identity webhook injects for IRSA."""
        return {
            **self.app_env(),
            "AWS_ROLE_ARN": self.role_arn,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(self.token_file),
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "AWS_DEFAULT_REGION": self.config.region,
        }

    def _write_outputs(self) -> None:
        self.outputs_file.write_text(json.dumps(self.outputs(), indent=2) + "\n")
        self.env_file.write_text(dotenv(self.pod_env()))

    # -- tokens (kubelet's part) -------------------------------------------------------

    def mint_token(
        self,
        *,
        namespace: str | None = None,
        service_account: str | None = None,
        audience: str = STS_AUDIENCE,
        lifetime: float | None = None,
        expired: bool = False,
        key: SigningKey | None = None,
    ) -> str:
        """A token for the app's service account, or for another one, audience or key."""
        lifetime = self.token_lifetime if lifetime is None else lifetime
        issued_at = time.time() - lifetime - 60 if expired else None
        return self.issuer.mint(
            namespace or self.config.namespace,
            service_account or self.config.service_account,
            audience=(audience,),
            lifetime=lifetime,
            issued_at=issued_at,
            key=key,
        )

    def rotate_token(self, token: str | None = None) -> str:
        """Write a fresh token (or the given one) into the pod's token file, atomically."""
        token = token or self.mint_token()
        write_token(self.token_file, token)
        return token

    # -- operator access ---------------------------------------------------------------

    def admin_client(self) -> Any:
        assert self.seaweed is not None, "the target is not up"
        return self.seaweed.admin_client()

    def stop_storage(self, *, crash: bool = False) -> None:
        assert self.seaweed is not None
        self.seaweed.stop(crash=crash)

    def start_storage(self) -> None:
        """Restart SeaweedFS on the same ports and data directory."""
        assert self.seaweed is not None
        self.seaweed.start()
