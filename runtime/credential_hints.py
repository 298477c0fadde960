"""Hints for credential failures: why STS or the token file said no, and what to change.

Kept apart from the storage hints of `runtime.doctor`: these read the token's claims and
STS's wording (AWS's and SeaweedFS's) to tell a wrong service account from a stale token.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from runtime.credentials import CredentialInfo, StsRefused, TokenFileError

TRUST_FIX = (
    "check the role's trust policy against this pod: its subject must be"
    " system:serviceaccount:<namespace>:<service account> of the pod, its audience"
    " sts.amazonaws.com, and its principal the cluster's OIDC provider"
)


def token_claims(token_file: str | None) -> dict[str, Any] | None:
    """The (unverified) claims of the token in `token_file`: they are not secret, the token is."""
    if not token_file:
        return None
    try:
        payload = Path(token_file).read_text().strip().split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (OSError, IndexError, ValueError):
        return None


def _claims_summary(claims: dict[str, Any] | None) -> str:
    if not claims:
        return ""
    shown = {k: claims[k] for k in ("sub", "aud", "iss") if k in claims}
    return " (the token has " + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"


def credential_hint(cause: BaseException | None, info: CredentialInfo) -> str | None:
    """The fix for a credential failure, or None when `cause` is not one."""
    if isinstance(cause, TokenFileError):
        return (
            f"the web identity token file {cause.path} is missing or unreadable: check that the"
            " pod mounts the projected ServiceAccount token (EKS adds it for a ServiceAccount"
            " annotated eks.amazonaws.com/role-arn) and that AWS_WEB_IDENTITY_TOKEN_FILE or"
            " webIdentityTokenFile names it"
        )
    if not isinstance(cause, StsRefused):
        return None
    said = f"{cause.code} {cause.sts_message}".lower()
    claims = _claims_summary(token_claims(info.token_file))
    if "expired" in said:
        return (
            "the token has expired: kubelet rotates the projected token well before expiry, so"
            " check that the token file is the projected one, and check the clock of this node"
            " (clock skew)" + claims
        )
    if "not valid yet" in said or "not yet valid" in said or "issued in the future" in said:
        return "the token is not valid yet: this node's clock is behind (clock skew); sync it"
    if "audience" in said:
        return (
            "the token's audience is not accepted: the projected token's audience must be"
            " sts.amazonaws.com and the IAM OIDC provider must list it as a client ID" + claims
        )
    if "role not found" in said or "cannot be found" in said or "no such role" in said:
        return f"the role {cause.role_arn} does not exist: check AWS_ROLE_ARN / roleArn"
    if "public key" in said or "signature" in said or "verification key" in said:
        return (
            "the token's signature does not match the issuer's keys: the token was not issued"
            " by this cluster's OIDC issuer, or the IAM OIDC provider points at another one"
            + claims
        )
    if "openidconnect provider" in said or "oidc provider" in said:
        return (
            "no IAM OIDC provider for the token's issuer: create it for the cluster's issuer"
            " (createOidcProvider in the stack config)" + claims
        )
    return TRUST_FIX + claims
