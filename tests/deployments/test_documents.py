"""Documents written through the API, against the running app (real Serve, PostgreSQL, S3):
searchable within seconds, deletes gone, all-or-nothing batches, tokens, concurrent writers,
a killed shard replica, and a rollout in the middle of a stream of writes.

The module serves a copy of the tiny version whose manifest names a corpus of its own, so
its writes go to that corpus's document log and every other test searches the tiny corpus as
it was built."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from cluster.api_tokens import write_token
from cluster.artifacts import ArtifactStore
from deployments.rollout import live_version, rollout
from monitoring.chaos import Plan, replica_kill
from tests.deployments.versions import derive_version

SEARCHABLE_WITHIN_S = 5.0


def word() -> str:
    """A word no passage of the corpus holds: what a written document is found by."""
    return "zq" + secrets.token_hex(5)


@pytest.fixture(scope="module")
def own_corpus(serving, tiny_version, tmp_path_factory):
    """(settings, version, corpus name): the tiny version under a corpus of its own, live for
    this module; the tiny version is live again afterwards."""
    settings, version_a, dir_a = tiny_version
    name = f"docs-{secrets.token_hex(3)}"
    version = upload_as(settings, dir_a, tmp_path_factory.mktemp("own"), version_a, name)
    rollout(settings, version)
    yield settings, version, name
    rollout(settings, version_a)


def upload_as(settings, source, folder, parent: str, corpus: str, derive: bool = False) -> str:
    """A copy of ``source`` (or, with ``derive``, a version ranking differently) stored with
    ``corpus`` as the corpus its manifest names."""
    if derive:
        folder = derive_version(source, folder / "v")
    else:
        folder = Path(shutil.copytree(source, folder / "v"))
        (folder / "manifest.json").unlink(missing_ok=True)
    extra = {"corpus": {"name": corpus, "snapshot": None, "count": None}}
    store = ArtifactStore.from_settings(settings)
    return store.upload_version(folder, parent=parent, extra=extra).version


@pytest.fixture(scope="module")
def api(serving, own_corpus):
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def auth(serving) -> dict:
    return {"authorization": f"Bearer {write_token(serving)}"}


@pytest.fixture
def written(api, auth):
    """Ids this test wrote; deleted afterwards, so other tests rank the corpus as it was."""
    ids: list[str] = []
    yield ids
    for doc_id in ids:
        api.delete(f"/documents/{doc_id}", headers=auth)
    settle(api, auth)


def settle(api, auth) -> None:
    """Return once every shard replica has applied every write so far: replicas apply the log
    in order, so once a probe written and deleted last is gone from ten searches in a row
    (spread over the replicas), so is everything before it."""
    key = word()
    doc_id = f"probe-{key}"
    assert put(api, auth, [{"id": doc_id, "text": key}]).status_code == 200
    wait_for(lambda: found(api, doc_id, key))
    assert api.delete(f"/documents/{doc_id}", headers=auth).status_code == 200
    wait_for(lambda: not any(found(api, doc_id, key) for _ in range(10)), timeout_s=15)


def put(api, auth, docs: list[dict]) -> httpx.Response:
    return api.put("/documents", json={"documents": docs}, headers=auth)


def found(api, doc_id: str, query: str, mode: str = "hybrid") -> bool:
    answer = api.post("/search", json={"query": query, "k": 20, "mode": mode})
    assert answer.status_code in (200, 503), answer.text  # 503: a replica is being replaced
    return answer.status_code == 200 and doc_id in [r["doc_id"] for r in answer.json()["results"]]


def wait_for(condition, timeout_s: float = SEARCHABLE_WITHIN_S) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_writes_need_the_write_token_and_searching_stays_open(api, auth):
    doc = {"documents": [{"id": "t-1", "text": "token check"}]}
    missing = api.put("/documents", json=doc)
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    wrong = api.put("/documents", json=doc, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "not the one" in wrong.json()["detail"]
    assert api.delete("/documents/t-1").status_code == 401
    assert api.post("/search", json={"query": "flu"}).status_code == 200
    assert api.get("/documents/t-1").status_code == 404  # nothing was written


def test_an_upsert_is_searchable_in_both_modes_and_a_delete_is_gone(api, auth, written):
    key = word()
    doc_id = f"user/{key}/é"  # ids are the user's strings: slashes and accents included
    text = f"{key} botulism toxin is produced by clostridium bacteria in sealed cans"
    answer = put(api, auth, [{"id": doc_id, "text": text, "title": "Canning", "url": "u"}])
    assert answer.status_code == 200, answer.text
    written.append(doc_id)
    seconds = wait_for(lambda: found(api, doc_id, key))
    print(f"\nupsert searchable (hybrid) after {seconds:.2f} s")
    wait_for(lambda: found(api, doc_id, f"Canning {text}", mode="dense"))
    got = api.get(f"/documents/{doc_id}").json()
    assert got["source"] == "api" and got["title"] == "Canning" and key in got["text"]

    deleted = api.delete(f"/documents/{doc_id}", headers=auth)
    assert deleted.status_code == 200 and deleted.json()["deleted"] == doc_id
    wait_for(lambda: not found(api, doc_id, key))  # each replica within the bound
    wait_for(lambda: not found(api, doc_id, f"Canning {text}", mode="dense"))
    assert api.get(f"/documents/{doc_id}").status_code == 404
    assert api.delete(f"/documents/{doc_id}", headers=auth).status_code == 404


def test_a_corpus_document_can_be_read_replaced_and_deleted(api, auth, written):
    hit = api.post("/search", json={"query": "symptoms of the flu", "k": 1}).json()["results"][0]
    doc_id = hit["doc_id"]
    got = api.get(f"/documents/{doc_id}").json()
    assert got == {"id": doc_id, "text": hit["text"], "title": None, "url": None,
                   "metadata": None, "source": "corpus"}  # fmt: skip
    key = word()
    assert put(api, auth, [{"id": doc_id, "text": f"{key} replaced"}]).status_code == 200
    written.append(doc_id)

    def replaced() -> bool:  # the old text no longer answers for it: one document, one copy
        body = api.post("/search", json={"query": "symptoms of the flu", "k": 20}).json()
        return found(api, doc_id, key) and all(r["text"] != hit["text"] for r in body["results"])

    wait_for(lambda: all(replaced() for _ in range(4)))  # on every replica
    assert api.get(f"/documents/{doc_id}").json()["source"] == "api"


def test_a_batch_is_all_or_nothing_and_bad_input_gets_a_clear_4xx(api, auth):
    good, bad_id = word(), word()
    cases = [
        ([{"id": good, "text": "fine"}, {"id": bad_id, "text": "   "}], "documents[1]"),
        ([{"id": good, "text": "a"}, {"id": good, "text": "b"}], "already used"),
        ([{"id": good, "text": "x" * 20_001}], "text"),
        ([{"id": "", "text": "no id"}], "id"),
        ([{"id": "bad\x01id", "text": "control"}], "control characters"),
        ([], "documents"),
    ]
    for docs, phrase in cases:
        answer = put(api, auth, docs)
        assert answer.status_code == 422, (docs, answer.text)
        assert phrase in answer.json()["detail"], answer.text
    assert api.get(f"/documents/{good}").status_code == 404  # nothing of a bad batch landed
    too_many = [{"id": f"{good}-{i}", "text": "t"} for i in range(1001)]
    assert put(api, auth, too_many).status_code == 422
    json_headers = {**auth, "content-type": "application/json"}
    raw = b'{"documents": [{"id": "a", "text": "caf\xe9"}]}'  # not UTF-8
    assert api.put("/documents", content=raw, headers=json_headers).status_code == 400
    raw = b'{"documents": [{"id": "a", "text": "bad \\udcff surrogate"}]}'  # JSON, not UTF-8
    answer = api.put("/documents", content=raw, headers=json_headers)
    assert answer.status_code == 422 and "unicode" in answer.json()["detail"], answer.text


def test_two_concurrent_writers_lose_nothing(api, auth, written):
    keys = {f"w{w}-{i}-{word()}": word() for w in range(2) for i in range(40)}
    ids = list(keys)
    written.extend(ids)

    def writer(part: list[str]) -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            for start in range(0, len(part), 8):
                docs = [{"id": d, "text": f"{keys[d]} concurrent"} for d in part[start : start + 8]]
                assert put(client, auth, docs).status_code == 200

    threads = [threading.Thread(target=writer, args=(ids[w::2],)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for doc_id in ids:
        assert api.get(f"/documents/{doc_id}").status_code == 200, doc_id
    wait_for(lambda: all(found(api, d, keys[d]) for d in ids[-4:]))
    assert all(found(api, d, keys[d]) for d in ids)


def test_a_killed_shard_replica_comes_back_with_every_written_document(api, auth, written):
    """SIGKILL of an IndexShard0 replica, twice (each of two replicas, or the one twice): the
    replacements replay the document log."""
    keys = {f"k-{word()}": word() for _ in range(12)}
    written.extend(keys)
    docs = [{"id": d, "text": f"{k} survives a restart"} for d, k in keys.items()]
    assert put(api, auth, docs).status_code == 200
    wait_for(lambda: all(found(api, d, k) for d, k in keys.items()))
    for _ in range(2):
        fault = replica_kill("IndexShard0", Plan(recover_s=90))
        fault.inject()
        fault.repair()
    wait_for(lambda: all(found(api, d, k) for d, k in keys.items()), timeout_s=60)


def test_a_rollout_during_writes_loses_nothing_and_resurrects_nothing(
    own_corpus, tiny_version, api, auth, written, tmp_path
):
    settings, version_a, name = own_corpus
    version_b = upload_as(settings, tiny_version[2], tmp_path, version_a, name, derive=True)
    keys: dict[str, str] = {}
    deleted: set[str] = set()
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                doc_id = f"r-{n}-{word()}"
                keys[doc_id] = word()
                assert put(client, auth, [{"id": doc_id, "text": keys[doc_id]}]).status_code == 200
                if n % 3 == 2:  # every third document is deleted again
                    victim = list(keys)[n - 1]
                    assert client.delete(f"/documents/{victim}", headers=auth).status_code == 200
                    deleted.add(victim)
                n += 1
                time.sleep(0.05)

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        time.sleep(1.0)
        assert rollout(settings, version_b) == version_b
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    written.extend(keys)
    try:
        assert live_version() == version_b and len(keys) > 10
        alive = [d for d in keys if d not in deleted]
        wait_for(lambda: all(found(api, d, keys[d]) for d in alive[-3:]))
        assert all(found(api, d, keys[d]) for d in alive), "a written document was lost"
        assert not any(found(api, d, keys[d]) for d in deleted), "a deleted one came back"
    finally:
        rollout(settings, version_a)  # this module's version
