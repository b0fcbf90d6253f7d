"""Ray's real AWS bootstrap of cluster.yaml, offline against moto's mocked AWS (RAY.md section 5).

Only the driver-side bootstrap runs here (no Ray workers, no other processes), so moto's in-process mock is the
verified design for this one check. It proves the head gets Ray's default profile and every GPU worker type keeps
the instance profile cluster.yaml names, whose role may read shards and write runs in the bucket.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@pytest.fixture
def mocked_aws(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # the bootstrap writes ~/.ssh/ray-autoscaler_<region>.pem
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    import moto

    with moto.mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        yield


def _allowed_actions(iam, profile_arn: str) -> set[tuple[str, str]]:
    """(action, resource) pairs the role of the instance profile ``profile_arn`` is allowed."""
    name = profile_arn.rsplit("/", 1)[1]
    roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
    pairs = set()
    for role in roles:
        for policy in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy)["PolicyDocument"]
            document = json.loads(document) if isinstance(document, str) else document
            for statement in document["Statement"]:
                if statement["Effect"] != "Allow":
                    continue
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                pairs |= {(action, resource) for action in actions for resource in resources}
    return pairs


def test_bootstrap_gives_every_gpu_worker_an_s3_profile(mocked_aws) -> None:
    import boto3
    from ray.autoscaler._private.commands import _bootstrap_config
    from ray.autoscaler._private.util import prepare_config

    iam = boto3.client("iam")
    # The profile cluster.yaml names (moto's account is the placeholder's 123456789012), with cluster/iam-policy.json.
    iam.create_role(RoleName="densenet-ray-s3", AssumeRolePolicyDocument=json.dumps(TRUST))
    policy = (ROOT / "cluster" / "iam-policy.json").read_text()
    iam.put_role_policy(RoleName="densenet-ray-s3", PolicyName="densenet-ray-bucket", PolicyDocument=policy)
    iam.create_instance_profile(InstanceProfileName="densenet-ray-s3")
    iam.add_role_to_instance_profile(InstanceProfileName="densenet-ray-s3", RoleName="densenet-ray-s3")

    config = prepare_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    with mock.patch("time.sleep"):
        bootstrapped = _bootstrap_config(config, no_config_cache=True)

    head = bootstrapped["head_node"]["IamInstanceProfile"]["Arn"]
    assert head.endswith(":instance-profile/ray-autoscaler-v1")  # Ray's default profile: the head only
    types = bootstrapped["available_node_types"]
    workers = {name: spec for name, spec in types.items() if name != bootstrapped["head_node_type"]}
    accelerators = {name: spec["resources"] for name, spec in workers.items()}
    assert accelerators["gpu_a10g"]["GPU"] == 4 and accelerators["gpu_a10g"]["accelerator_type:A10G"] == 1
    assert accelerators["gpu_a100"]["GPU"] == 8 and accelerators["gpu_h100"]["accelerator_type:H100"] == 1
    for name, spec in workers.items():
        allowed = _allowed_actions(iam, spec["node_config"]["IamInstanceProfile"]["Arn"])
        assert ("s3:GetObject", "arn:aws:s3:::BUCKET/*") in allowed, name
        assert ("s3:PutObject", "arn:aws:s3:::BUCKET/runs/*") in allowed, name
        assert not any(action in ("s3:*", "*") for action, _ in allowed), name  # least privilege
