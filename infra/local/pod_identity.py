"""A stand-in for the EKS Pod Identity Agent: a container-credentials endpoint on 127.0.0.1.

Pods get `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
The agent checks the Authorization header against the pod's token, then serves credentials it
obtained from STS for the pod's service account (here: the local STS, with a minted token).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from infra.local.jsonhttp import JsonServer

CREDENTIALS_PATH = "/v1/credentials"


@dataclass
class PodIdentityAgent:
    sts_endpoint: str
    role_arn: str
    service_account_token: Callable[[], str]
    authorization_token: str
    port: int = 0
    requests: int = 0
    _server: JsonServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CREDENTIALS_PATH}"

    def fetch(self) -> dict[str, Any]:
        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_endpoint,
            region_name="us-east-1",
            config=Config(signature_version=UNSIGNED),
        )
        response = sts.assume_role_with_web_identity(
            RoleArn=self.role_arn,
            RoleSessionName="eks-pod-identity",
            WebIdentityToken=self.service_account_token(),
        )
        creds = response["Credentials"]
        return {
            "AccessKeyId": creds["AccessKeyId"],
            "SecretAccessKey": creds["SecretAccessKey"],
            "Token": creds["SessionToken"],
            "Expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "AccountId": self.role_arn.split(":")[4],
        }

    def start(self) -> None:
        self._server = JsonServer(self._route, self.port)
        self.port = self._server.start()

    def _route(self, path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        self.requests += 1
        if path != CREDENTIALS_PATH:
            return 404, {"message": "not found"}
        if headers.get("Authorization") != self.authorization_token:
            return 401, {"message": "invalid authorization token"}
        return 200, self.fetch()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
