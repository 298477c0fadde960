"""The policy pack's entry point: Pulumi runs this directory's `__main__.py` (with the
directory first on sys.path) in the pack's own virtualenv. `PolicyPack(...)` starts the gRPC
server the CLI talks to and blocks, so it is built here only; the policies live in
`guardrails.py`, importable (and tested) without it."""

from pulumi_policy import EnforcementLevel, PolicyPack

try:  # inside this repository (tests, type checks)
    from infra.policy_pack.guardrails import POLICIES
except ModuleNotFoundError:  # run by Pulumi, or published on its own
    from guardrails import POLICIES  # type: ignore[import-not-found,no-redef]

PolicyPack(
    name="satchel-guardrails",
    description="What Satchel's stack promises: a private bucket, a role for one service"
    " account, least privilege",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
