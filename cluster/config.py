"""The one typed settings object for the whole product.

Every process (CLI, Ray Serve replicas, Ray Train workers, the Streamlit site) reads its
configuration from here: environment variables prefixed ``TWOTOWER_`` or a ``.env`` file.
The defaults describe the embedded local stack on loopback; in ``production`` mode no secret
has a default and startup fails loudly if one is missing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_ACCESS_KEY = "twotower"
LOCAL_SECRET_KEY = "twotower-local-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWOTOWER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    mode: Literal["local", "production"] = "local"
    state_dir: Path = REPO_ROOT / ".state"
    host: str = "127.0.0.1"

    # --- PostgreSQL log store. Empty DSN = start the embedded server in `twotower up`.
    postgres_dsn: str = ""
    postgres_port: int = 55432
    postgres_pool_max: int = 4
    log_buffer_dir: Path | None = None  # defaults to <state_dir>/log-buffer
    log_buffer_max_bytes: int = 256 * 1024 * 1024
    # A log call returns once its record is fsync'd to the writer's write-ahead file, so an
    # answered search survives a crash of its replica (false: faster, but a crash loses the
    # last records; cost in docs/results/serving.md).
    log_fsync: bool = True
    # Feedback whose search is not in PostgreSQL yet (still in another writer's buffer) is
    # retried for this long before it is rejected to rejected.jsonl and counted.
    log_feedback_wait_s: float = Field(default=600.0, ge=0)

    # --- S3 artifact store. Empty endpoint = start SeaweedFS (`weed mini`) in `twotower up`.
    s3_endpoint: str = ""
    s3_port: int = 58333
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "twotower"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    model_cache_dir: Path | None = None  # defaults to <state_dir>/model-cache

    # --- Ray. Empty address = start a local head in `twotower up`.
    ray_address: str = ""
    ray_port: int = 6380
    ray_dashboard_port: int = 8265
    ray_num_cpus: int | None = None

    # --- Serving (Ray Serve).
    serve_port: int = 8000
    # HAProxy on serve_port in front of the ingress replicas' own HTTP servers, and gRPC between
    # replicas (Serve's RAY_SERVE_ENABLE_HA_PROXY + RAY_SERVE_THROUGHPUT_OPTIMIZED), on the Ray
    # head `twotower up` starts: several times the throughput of Serve's Python proxy
    # (docs/results/serving.md). Its stats page and metrics endpoint stay on `host`.
    serve_haproxy: bool = True
    haproxy_stats_port: int = 8404
    haproxy_metrics_port: int = 9101
    # HAProxy's patience (cluster/haproxy.py writes them into Serve's config): a client gets
    # this long to send its request headers, and a connection this long of silence, before it
    # is dropped (Serve's template holds one for an hour); a replica silent for
    # haproxy_timeout_server_s is an error (504), not a hang. Above Serve's own request limit
    # (serve_request_timeout_s), so Serve answers first whenever it still can.
    haproxy_timeout_http_request_s: int = Field(default=10, gt=0)
    haproxy_timeout_client_s: int = Field(default=60, gt=0)
    haproxy_timeout_server_s: int = Field(default=40, gt=0)
    num_shards: int = 2
    # Two replicas of everything on a search's path, so one crashed replica is no outage: the
    # ingress retries a failed call once, and Serve routes it to the surviving replica.
    shard_replicas: int = 2
    encoder_min_replicas: int = 2
    encoder_max_replicas: int = 3
    encoder_target_ongoing_requests: float = 2.0  # in-flight *batches* per encoder replica
    encoder_upscale_delay_s: float = 10.0  # Serve autoscaler: sustained load before adding
    encoder_downscale_delay_s: float = 60.0  # ... and sustained calm before removing a replica
    encoder_batch_size: int = 32  # also the ingress's batch: queries per fan-out
    # The ingress's window forms the batches, and is used only while another batch is in
    # flight (a lone search goes at once); the encoder then takes whatever has queued while
    # its last forward pass ran (no window of its own: waiting twice only added latency).
    ingress_batch_wait_s: float = 0.012
    encoder_batch_wait_s: float = 0.0
    ingress_replicas: int = 2
    shard_resource_prefix: str = ""  # "shard-" = shard i needs custom resource "shard-i"
    max_ongoing_requests: int = 256
    max_query_chars: int = 512
    max_k: int = 100
    hybrid_dense_weight: float = Field(0.3, ge=0.0, le=1.0)  # dense share of hybrid (tuned on dev)
    # The mode a search without one gets, API and website alike: the one that ranks best on
    # dev (docs/results/quality.md). A request may still ask for the other.
    default_mode: Literal["dense", "hybrid"] = "hybrid"
    pinned_version: str | None = None  # None = follow the store's `latest` pointer
    # Request hygiene in the ingress itself (nginx has its own limits, but the API is also
    # reached without it): larger bodies get 413, deeper or longer-numbered JSON gets 400.
    max_body_bytes: int = 64 * 1024
    max_json_depth: int = 32
    max_json_number_chars: int = 32  # characters of one JSON number literal
    # Feedback rate limits (token buckets per ingress replica; 429 beyond): one client, and one
    # session, may not flood the clicks the learning loop trains on.
    feedback_client_rate_per_s: float = 10.0
    feedback_client_burst: int = 40
    feedback_session_rate_per_s: float = 2.0
    feedback_session_burst: int = 10
    # The header a trusted front door sets to the client's address (nginx: X-Real-IP); "" =
    # the peer address. Only trust it where clients cannot reach the API around that door.
    client_ip_header: str = "x-real-ip"
    # Time limits that turn a down or hung service into a fast 503 instead of a hang: one S3
    # or PostgreSQL call from the ingress, one encoder or shard call, and Serve's own limit
    # for a whole HTTP request (a last resort above the others).
    dependency_timeout_s: float = 2.0
    backend_timeout_s: float = 5.0
    serve_request_timeout_s: float = 30.0

    # --- Website and monitoring.
    ui_port: int = 8501
    start_website: bool = True  # `up` starts the website; compose runs it as its own container
    api_url: str = ""  # the website's backend; defaults to http://<host>:<serve_port>
    prometheus_port: int = 9090
    prometheus_url: str = ""  # the status page's Prometheus; defaults to http://<host>:<port>
    model_max_age_alert_s: int = 86400  # alert when no new version was published for this long
    metrics_port: int = 8080  # Ray's per-node metrics export port

    # --- Training.
    # What `up` does when the artifact store has no live version: import the release version
    # shipped in training/data/release (no training), or train `profile`.
    first_start: Literal["release", "train"] = "release"
    profile: Literal["quick", "full"] = "quick"
    train_workers: int = 2
    train_cpus_per_worker: float = 0.5
    # "ray" = Ray Train TorchTrainer (DDP, S3 checkpoints); "local" = the same loop in-process
    # (for a machine too busy to host a Ray cluster; results are the same model and losses).
    train_executor: Literal["ray", "local"] = "ray"
    seed: int = 13

    # --- Your own documents (`twotower corpus import`, docs/corpora.md). A row whose text or id
    # is longer is refused (or left out with --skip-bad): long documents belong split into
    # passages, and ids are keys, not content.
    corpus_max_text_chars: int = Field(default=20_000, gt=0)
    corpus_max_id_chars: int = Field(default=256, gt=0, le=256)  # the log store's id limit
    # Documents written through the API (PUT/DELETE /documents): the token writes need (local
    # mode generates one into <state_dir>/secrets/api-write.token; production must set it),
    # an optional token searches then need too, how big a batch may be, and how often shard
    # replicas look for new writes (a write is searchable within about twice this).
    api_write_token: SecretStr | None = None
    api_read_token: SecretStr | None = None
    documents_max_batch: int = Field(default=1000, gt=0)
    documents_max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    documents_poll_s: float = Field(default=0.5, gt=0)

    # --- Learning loop.
    reinforce_interval_s: int = 600
    reinforce_min_events: int = 50
    gate_tolerance: float = 0.01
    reinforce_workers: int = 2  # Ray Train workers for the fine-tune
    reinforce_epochs: int = 3  # passes over log triplets + replay per run
    reinforce_replay_ratio: float = 2.0  # replayed original training examples per log triplet
    # Fine-tune lr = the parent's peak lr x this. Larger scales learned the clicked queries
    # faster but moved DL19 and the held-out half enough that the gate threw most runs (and
    # their clicks) away (docs/results/learning-loop.md, "Same clicks, several fine-tunes").
    reinforce_lr_scale: float = Field(default=0.2, gt=0)
    # The passage side's (embedding and passage tower) fine-tune lr, as a share of the query
    # tower's. 0 freezes it: passage vectors (the index) stay the live version's. A quarter
    # learned the clicked queries better than freezing and passed the gate more often
    # (docs/results/learning-loop.md, "The passage side at its own pace").
    reinforce_passage_lr_scale: float = Field(default=0.25, ge=0)
    # The skip-above (or marked) negative's own hinge, added to the in-batch mean where it
    # would be one candidate among ~2 x batch (TrainConfig.explicit_negative_weight).
    reinforce_explicit_negative_weight: float = Field(default=1.0, ge=0)
    # What the fine-tune's distillation terms pull towards: "teacher" (the cached MiniLM vectors,
    # as in training) or "parent" (the live version's own vectors of the replayed examples, so
    # queries users did not click keep their place while clicked ones move; docs/learning-loop.md).
    reinforce_anchor: Literal["teacher", "parent"] = "parent"
    reinforce_propensity_eta: float = 1.0  # position bias: P(examined | rank r) = (1/r)**eta
    reinforce_max_ipw: float = 10.0  # clip on inverse-propensity weights (variance bound)
    # Sessions that must click the same passage for the same query before it is a positive.
    reinforce_min_click_sessions: int = Field(default=1, ge=1)
    reinforce_bot_max_events_per_s: int = 4  # more events in any 1 s window = a bot session
    reinforce_bot_click_fraction: float = 0.8  # clicking this share of all shown = a bot
    reinforce_holdout_fraction: float = 0.1  # logged queries kept for the gate, never trained
    reinforce_run_timeout_s: int = 3600  # the scheduler kills a run that takes longer

    # --- Simulated users (`twotower simulate`, docs/learning-loop.md, "Measuring it").
    # Position-based click model: P(examined | rank r) = simulate_examination[r - 1] (ranks past
    # the list: its last value). The default is (1/r)**1, the curve of the ULTR simulations
    # (Joachims et al. 2017) and of the loop's own propensity setting; a fitted curve replaces it.
    simulate_examination: list[float] = Field(
        default_factory=lambda: [1.0, 0.5, 0.333, 0.25, 0.2, 0.167, 0.143, 0.125, 0.111, 0.1],
        min_length=1,
    )
    # P(click | examined) for the highest relevance grade of the qrels and for an unjudged or
    # grade-0 result (the noise); grades between are interpolated by gain (2**g - 1).
    simulate_p_click_relevant: float = Field(default=0.9, ge=0, le=1)
    simulate_p_click_irrelevant: float = Field(default=0.05, ge=0, le=1)
    simulate_bot_share: float = Field(default=0.02, ge=0, le=1)  # bot sessions per human one
    # --- end of simulated users.

    # --- Click memory (docs/click-memory.md): a prior per (normalised query, document) from
    # clicks and marks of distinct sessions, blended into dense and hybrid rankings within
    # seconds of a click, on every ingress replica.
    click_memory_enabled: bool = True
    # The memory's share of the blend: (1 - w) x the min-max-normalised score + w x the pull.
    # Weight and minimum sessions were tuned on simulated days never used to report
    # (experiments/click_memory_grid.py; docs/results/click-memory.md). Two sessions at least:
    # one session alone, however often it clicks, never moves a result.
    click_memory_weight: float = Field(default=0.7, ge=0, le=1)
    # Distinct sessions (of distinct clients) a (query, document) needs before the memory moves it.
    click_memory_min_sessions: int = Field(default=2, ge=1)
    # Evidence halves with every half-life of age.
    click_memory_half_life_s: float = Field(default=7 * 86400.0, gt=0)
    # The most one session gives one (query, document), either way; a relevance mark is worth
    # a whole session (+cap for relevant, -cap for not relevant).
    click_memory_session_cap: float = Field(default=4.0, gt=0)
    # Sessions of one client (a hash of its address) that count per (query, document).
    click_memory_client_sessions: int = Field(default=1, ge=1)
    # P(examined | rank r) = click_memory_propensities[r - 1] (ranks past the list: its last
    # value); a click weighs its inverse. The default is (1/r)**1, as reinforce_propensity_eta.
    click_memory_propensities: list[float] = Field(
        default_factory=lambda: [1.0, 0.5, 0.333, 0.25, 0.2, 0.167, 0.143, 0.125, 0.111, 0.1],
        min_length=1,
    )
    # The pull of a document is tanh(evidence / scale), in (-1, 1).
    click_memory_scale: float = Field(default=10.0, gt=0)
    # Candidates re-ranked for a remembered query (at least k): a document clicked just below
    # the results can come up.
    click_memory_depth: int = Field(default=20, ge=1)
    # How often each ingress replica folds new feedback (one at a time) and reads the changes.
    click_memory_poll_s: float = Field(default=1.0, gt=0)
    # --- end of click memory.

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        if self.mode == "local":
            if self.s3_access_key is None:
                self.s3_access_key = SecretStr(LOCAL_ACCESS_KEY)
            if self.s3_secret_key is None:
                self.s3_secret_key = SecretStr(LOCAL_SECRET_KEY)
        else:
            missing = [
                name
                for name, value in (
                    ("TWOTOWER_POSTGRES_DSN", self.postgres_dsn),
                    ("TWOTOWER_S3_ENDPOINT", self.s3_endpoint),
                    ("TWOTOWER_S3_ACCESS_KEY", self.s3_access_key),
                    ("TWOTOWER_S3_SECRET_KEY", self.s3_secret_key),
                    ("TWOTOWER_API_WRITE_TOKEN", self.api_write_token),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"production mode needs {', '.join(missing)} to be set")
        if self.num_shards < 1:
            raise ValueError("num_shards must be at least 1")
        return self

    # Derived values: computed, never stored twice.
    @property
    def dsn(self) -> str:
        """The configured DSN, else the embedded server's app role (a plain role that owns the
        `twotower` database), whose password libpq reads from the password file the server
        writes into <state_dir>/secrets/ (cluster/servers.py, EmbeddedPostgres.app_dsn)."""
        if self.postgres_dsn:
            return self.postgres_dsn
        passfile = quote(str(self.secrets_dir / "postgres-app.pgpass"))
        return (
            f"postgresql://twotower@{self.host}:{self.postgres_port}/twotower?passfile={passfile}"
        )

    @property
    def write_token_file(self) -> Path:
        """Where local mode keeps the generated API write token."""
        return self.secrets_dir / "api-write.token"

    @property
    def secrets_dir(self) -> Path:
        """Where the local stack keeps the secrets it generates (0700; files 0600)."""
        return self.state_dir.resolve() / "secrets"

    @property
    def s3_address(self) -> str:
        """host:port of the S3 server, as the minio SDK wants it."""
        return self.s3_endpoint or f"{self.host}:{self.s3_port}"

    @property
    def ray_connect_address(self) -> str:
        """What to pass to ray.init(): the configured cluster, else the local stack's head.
        Never "auto": that finds whichever Ray on the machine started last."""
        return self.ray_address or f"{self.host}:{self.ray_port}"

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.host}:{self.serve_port}"

    @property
    def prometheus_base_url(self) -> str:
        return self.prometheus_url or f"http://{self.host}:{self.prometheus_port}"

    @property
    def buffer_dir(self) -> Path:
        return self.log_buffer_dir or self.state_dir / "log-buffer"

    @property
    def cache_dir(self) -> Path:
        return self.model_cache_dir or self.state_dir / "model-cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """``TWOTOWER_*`` variables that rebuild ``settings`` in a process we launch (the Ray head
    and its workers, a learning-loop run), so it sees this process's configuration."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | dict):
            value = json.dumps(value)  # pydantic-settings reads complex values as JSON
        env[f"TWOTOWER_{name.upper()}"] = str(value)
    return env
