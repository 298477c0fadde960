"""Satchel's Pulumi policy pack: `pulumi preview --policy-pack infra/policy_pack`."""
