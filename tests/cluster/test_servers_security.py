"""The embedded servers let in only who holds the stack's credentials: PostgreSQL logins need
a password and the app is a plain role; SeaweedFS hands objects out only through S3 with the
keys (its other HTTP ports want a JWT, its gRPC ports a client certificate); every port is on
loopback. All against the real servers of the session's fixtures."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import grpc
import httpx
import psutil
import psycopg
import pytest
from minio import Minio
from psycopg import errors

from cluster.config import Settings
from cluster.logstore import LogReader
from cluster.processes import free_port
from cluster.servers import EmbeddedPostgres


def login(server: EmbeddedPostgres, user: str, password: str | None) -> None:
    """Log in over TCP as `user`; no password file is consulted, whatever PGPASSFILE says."""
    extra = {} if password is None else {"password": password}
    psycopg.connect(
        host=server.host, port=server.port, dbname="postgres", user=user,
        passfile="/no/such/file", connect_timeout=5, **extra,
    ).close()  # fmt: skip


def test_postgres_wants_a_password_from_everyone(postgres):
    for user, password in (("postgres", None), ("postgres", "wrong"), ("twotower", None)):
        with pytest.raises(psycopg.OperationalError, match="password"):
            login(postgres, user, password)
    login(postgres, "postgres", postgres.superuser_password())  # the right one still works


def test_the_app_is_a_plain_role_that_owns_its_tables(postgres, settings):
    with LogReader(settings) as reader:
        reader.latest_feedback_id()  # the migrations have run, as the app
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert (conn.info.user, role) == ("twotower", (False, False, False, False))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE intruder LOGIN PASSWORD 'x'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE twotower SUPERUSER")
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners == [("twotower",)]


def test_a_data_folder_from_the_trusting_days_gets_passwords():
    """A data folder made when every loopback login was trusted (as the stack did before),
    with a table the superuser created: the next start sets the passwords, hands the table to
    the app and stops trusting anyone. The stack's own app role may not create databases."""
    folder = Path(tempfile.mkdtemp(prefix="tt-pg-old-"))  # not under pytest's root (mode)
    server = EmbeddedPostgres(folder / "data", port=free_port())
    try:
        server.data_dir.mkdir(parents=True, mode=0o700)
        server._prepare_permissions(server._user())
        server._run("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres")
        with open(server.data_dir / "postgresql.conf", "a") as conf:
            conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        server._run("pg_ctl", "-w", "-l", str(server.log_file), "-o", f"-p {server.port}", "start")
        trusted = f"postgresql://postgres@127.0.0.1:{server.port}"
        with psycopg.connect(f"{trusted}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE twotower")
        with psycopg.connect(f"{trusted}/twotower", autocommit=True) as conn:
            conn.execute("CREATE TABLE searches (id bigserial PRIMARY KEY, query text)")

        server.start()  # the running server, provisioned
        with pytest.raises(psycopg.OperationalError, match="password"):
            login(server, "postgres", None)
        with psycopg.connect(server.app_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO searches (query) VALUES ('still here, and mine')")
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'searches'")
            assert owner.fetchone() == ("twotower",)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("CREATE DATABASE another")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_settings_name_the_password_file_the_server_writes(tmp_path):
    """`Settings.dsn` (what the app connects with) and the server agree without talking."""
    local = Settings(state_dir=tmp_path, host="127.0.0.1", postgres_port=5999, postgres_dsn="")
    server = EmbeddedPostgres(tmp_path / "postgres", 5999, "127.0.0.1")
    assert local.dsn == server.app_dsn
    assert ":" not in local.dsn.split("//", 1)[1].split("@", 1)[0]  # no password in it


def test_seaweedfs_hands_objects_out_only_through_s3_with_the_keys(s3, settings):
    client = Minio(
        s3.address,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        secure=False,
    )
    bucket = "secured"
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, "models/LATEST", io.BytesIO(b'{"version": "v1"}'), 17)
    assert client.get_object(bucket, "models/LATEST").read() == b'{"version": "v1"}'

    ports = json.loads((s3.data_dir / "ports.json").read_text())
    filer = f"http://{s3.host}:{ports['filer.port']}"
    volume = f"http://{s3.host}:{ports['volume.port']}"
    refused = {
        "filer file": httpx.get(f"{filer}/buckets/{bucket}/models/LATEST").status_code,
        "filer listing": httpx.get(f"{filer}/buckets/{bucket}/models/").status_code,
        "filer upload": httpx.put(f"{filer}/buckets/{bucket}/x", content=b"x").status_code,
        "volume read": httpx.get(f"{volume}/1,0100000000").status_code,
        "s3 without keys": httpx.get(f"{s3.endpoint}/{bucket}/models/LATEST").status_code,
    }
    print(refused)
    assert refused == {what: 401 for what in refused} | {"s3 without keys": 403}


def test_seaweedfs_listens_on_loopback_only(s3):
    weed = psutil.Process(s3.running().pid)
    sockets = [c.laddr for c in weed.net_connections(kind="inet") if c.status == "LISTEN"]
    print(sorted(sockets))
    assert len(sockets) >= 5  # master, volume, filer (HTTP and gRPC each), S3
    assert {address.ip for address in sockets} == {"127.0.0.1"}


def volume_status(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """What the volume server's gRPC port answers to VolumeServerStatus (an empty request)."""
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials)
    with channel:
        call = channel.unary_unary("/volume_server_pb.VolumeServer/VolumeServerStatus")
        try:
            call(b"", timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()


def test_seaweedfs_grpc_wants_the_process_s_own_client_certificate(s3, tmp_path):
    """The gRPC ports would hand out any object too (a volume server reads needles to whoever
    asks); they speak mutual TLS and trust only the certificate made at start."""
    ports = json.loads((s3.data_dir / "ports.json").read_text())
    address = f"{s3.host}:{ports['volume.port.grpc']}"
    cert, key = (path.read_bytes() for path in s3.grpc_certificate)
    stranger = tmp_path / "stranger"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", f"{stranger}.key", "-out", f"{stranger}.crt", "-days", "1",
         "-subj", "/CN=twotower-seaweedfs", "-addext", f"subjectAltName=IP:{s3.host}"],
        check=True, capture_output=True,
    )  # fmt: skip
    answers = {
        "plaintext": volume_status(address, None),
        "TLS, no client certificate": volume_status(
            address, grpc.ssl_channel_credentials(root_certificates=cert)
        ),
        "a stranger's certificate": volume_status(
            address,
            grpc.ssl_channel_credentials(
                root_certificates=cert,
                private_key=Path(f"{stranger}.key").read_bytes(),
                certificate_chain=Path(f"{stranger}.crt").read_bytes(),
            ),
        ),
        "the server's own certificate": volume_status(
            address,
            grpc.ssl_channel_credentials(
                root_certificates=cert, private_key=key, certificate_chain=cert
            ),
        ),
    }
    print(answers)
    assert answers == {
        "plaintext": grpc.StatusCode.UNAVAILABLE,
        "TLS, no client certificate": grpc.StatusCode.UNAVAILABLE,
        "a stranger's certificate": grpc.StatusCode.UNAVAILABLE,
        "the server's own certificate": grpc.StatusCode.OK,
    }
    assert stat.S_IMODE(s3.grpc_certificate[1].parent.stat().st_mode) == 0o700
