"""The shared fixtures start real servers that the rest of the suite can rely on."""

import io

import psycopg
from minio import Minio

from cluster.config import get_settings


def test_postgres_fixture_serves_the_configured_database(settings):
    with psycopg.connect(settings.dsn) as conn:
        (name,) = conn.execute("SELECT current_database()").fetchone()
    assert name == "twotower"


def test_s3_fixture_accepts_only_the_configured_keys(settings):
    client = Minio(
        settings.s3_address,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=False,
    )
    bucket = "fixture-check"
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, "hello.txt", io.BytesIO(b"hello"), 5)
    assert client.get_object(bucket, "hello.txt").read() == b"hello"

    intruder = Minio(settings.s3_address, access_key="nobody", secret_key="wrong", secure=False)
    try:
        intruder.list_buckets()
        raise AssertionError("S3 accepted unknown credentials")
    except Exception as err:  # minio raises S3Error for a refused signature
        assert "S3Error" in type(err).__name__ or "Access" in str(err)


def test_ray_workers_see_the_same_settings(ray_local):
    import ray

    @ray.remote
    def worker_view() -> tuple[str, str]:
        s = get_settings()
        return s.dsn, s.s3_address

    assert ray.get(worker_view.remote()) == (ray_local.dsn, ray_local.s3_address)
