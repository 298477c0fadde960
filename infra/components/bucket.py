"""`satchel:index:SecureBucket`: the app's bucket with secure defaults."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import StackConfig


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """Deny every request that does not use TLS, on the bucket and its objects."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


class SecureBucket(pulumi.ComponentResource):
    """Owner-enforced, private, encrypted (SSE-S3 or SSE-KMS), versioned, TLS-only.

    Without `forceDestroy` the bucket is kept on `pulumi destroy` (and on a replacement): a
    versioned bucket in use is never empty, and S3 would refuse to delete it anyway. Its
    protections are `deleted_with` it, so a destroy never strips them off a bucket that stays
    (they go with the bucket when it is deleted, and stay with it when it is kept).
    """

    bucket: aws.s3.Bucket

    def __init__(
        self,
        name: str,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
        *,
        partition: str = "aws",
    ) -> None:
        super().__init__("satchel:index:SecureBucket", name, None, opts)
        naming: dict[str, Any] = (
            {"bucket": config.bucket_name}
            if config.bucket_name
            else {"bucket_prefix": config.bucket_name_prefix}
        )
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            force_destroy=config.force_destroy,
            tags=config.tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=not config.force_destroy),
            **naming,
        )
        bucket_id = self.bucket.id
        child = pulumi.ResourceOptions(parent=self, deleted_with=self.bucket)
        # ACLs off: the bucket owner owns every object, and writes with an ACL are refused.
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[_encryption_rule(config.kms_key_arn)],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled" if config.versioning else "Suspended"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": config.noncurrent_version_expiration_days
                    },
                },
                {
                    # A delete on a versioned bucket leaves a marker; once its noncurrent
                    # versions expired, the marker alone would stay (and slow listings).
                    "id": "expire-delete-markers",
                    "status": "Enabled",
                    "filter": {},
                    "expiration": {"expired_object_delete_marker": True},
                },
                {
                    "id": "abort-incomplete-multipart-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                },
            ],
            # S3 rejects lifecycle changes racing a versioning change on a new bucket.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[versioning])
            ),
        )
        # After the public access block: a policy applied first could be briefly "public".
        # Rendered from the bucket's name, not its `arn` output: a configured name is known
        # at `pulumi preview` of a new stack, so the policy pack checks the document there.
        self.policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket_id,
            policy=self.bucket.bucket.apply(
                lambda bucket: json.dumps(tls_only_policy(f"arn:{partition}:s3:::{bucket}"))
            ),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[public_block, ownership])
            ),
        )
        self.register_outputs({"bucketName": self.bucket.bucket, "bucketArn": self.bucket.arn})


def _encryption_rule(
    kms_key_arn: str | None,
) -> aws.s3.BucketServerSideEncryptionConfigurationRuleArgsDict:
    if kms_key_arn:
        return {
            "apply_server_side_encryption_by_default": {
                "sse_algorithm": "aws:kms",
                "kms_master_key_id": kms_key_arn,
            },
            "bucket_key_enabled": True,  # fewer KMS calls, lower cost
        }
    return {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
