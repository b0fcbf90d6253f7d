"""Run storage as Ray sees it: local paths, AWS S3, and S3-compatible endpoints."""

from __future__ import annotations


def test_s3_run_storage_for_ray(aws_env, monkeypatch) -> None:
    """Ray gets a credential-free pyarrow filesystem and the prefix-stripped path when the endpoint is custom."""
    import pickle

    from densenet_ray.train.run.ray_storage import ray_storage

    path, filesystem = ray_storage("s3://bucket/runs/")
    assert path == "bucket/runs" and filesystem.type_name == "s3"
    assert b"testing-secret-key" not in pickle.dumps(filesystem)
    assert ray_storage("/tmp/runs") == ("/tmp/runs", None)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert ray_storage("s3://bucket/runs") == ("s3://bucket/runs", None)  # AWS itself: Ray's own resolution
