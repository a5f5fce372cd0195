"""What the ingress calls besides Serve deployments: the artifact store (S3) and the log store
(PostgreSQL). Every call is bounded in time and fails as ``ServiceUnavailable`` naming the
service, so a service that is down or hung costs a client a quick 503, never a hang."""

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import certifi
import psycopg
import urllib3
from minio import Minio
from minio.error import MinioException

from cluster.artifacts import ArtifactStore
from cluster.config import Settings
from deployments.errors import ServiceUnavailable

S3 = "artifact store (S3)"
POSTGRES = "log store (PostgreSQL)"
S3_FAILURES = (urllib3.exceptions.HTTPError, MinioException, OSError)
POSTGRES_FAILURES = (psycopg.Error, OSError)


class Service:
    """Blocking calls into one service, run on threads of its own (a hung service cannot take
    the threads another one needs), each given at most ``timeout_s``."""

    def __init__(
        self, name: str, timeout_s: float, failures: tuple[type[BaseException], ...]
    ) -> None:
        self.name, self.timeout_s, self.failures = name, timeout_s, failures
        self.pool = ThreadPoolExecutor(4, thread_name_prefix=name.split()[0])

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(self.name, f"no answer within {self.timeout_s:g} s") from None
        except self.failures as err:
            raise ServiceUnavailable(self.name, type(err).__name__) from err


def fast_artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store through an HTTP client that gives up quickly (1 s to connect, one
    retry): minio's own client retries a refused connection for seconds, and an API request
    should not. Makes an S3 call (the bucket check), so call it through ``Service.call``."""
    endpoint, secure = settings.s3_address, settings.s3_secure
    if "://" in endpoint:  # the same rules as cluster.artifacts.minio_client
        parsed = urlparse(endpoint)
        endpoint, secure = parsed.netloc, parsed.scheme == "https"
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=settings.dependency_timeout_s),
        retries=urllib3.Retry(total=1, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    client = Minio(
        endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=secure,
        region=settings.s3_region,
        http_client=http,
    )
    return ArtifactStore(client, settings.s3_bucket, settings.cache_dir)
