"""A local OIDC issuer standing in for the EKS cluster's, and EKS-shaped service account tokens.

The issuer serves only what STS needs: the discovery document and the JWKS, over http on
127.0.0.1. Tokens look like kubelet's projected tokens: RS256 with a `kid`, `aud` as a list,
`sub` = `system:serviceaccount:NS:SA`, and the `kubernetes.io` claim.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from infra.local.jsonhttp import JsonServer
from infra.policies import STS_AUDIENCE


@dataclass
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(private=private, kid=uuid.uuid4().hex[:16])

    def jwk(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass
class OidcIssuer:
    """Serves discovery + JWKS for one signing key on 127.0.0.1, and mints tokens with it."""

    port: int = 0
    key: SigningKey = field(default_factory=SigningKey.generate)
    _server: JsonServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = JsonServer(self._route, self.port)
        self.port = self._server.start()

    def _route(self, path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        if path == "/.well-known/openid-configuration":
            return 200, self.discovery()
        if path == "/keys":
            return 200, {"keys": [self.key.jwk()]}
        return 404, {"error": "not found"}

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/keys",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def mint(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: Sequence[str] = (STS_AUDIENCE,),
        lifetime: float = 3600,
        not_before_in: float = 0,
        issued_at: float | None = None,
        key: SigningKey | None = None,
        issuer: str | None = None,
    ) -> str:
        """A projected service-account token. Every knob makes a token STS must refuse."""
        now = time.time() if issued_at is None else issued_at
        signer = key or self.key
        claims = {
            "iss": issuer or self.url,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": list(audience),
            "iat": int(now),
            "nbf": int(now + not_before_in),
            "exp": int(now + lifetime),
            "jti": uuid.uuid4().hex,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": f"{service_account}-pod", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        return jwt.encode(claims, signer.private, algorithm="RS256", headers={"kid": signer.kid})


def write_token(path: Path, token: str) -> None:
    """Replace the token file atomically, as kubelet does: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    with os.fdopen(fd, "w") as out:
        out.write(token)
    os.chmod(temp, 0o600)
    os.replace(temp, path)
