"""Rollout and rollback under concurrent load: no failed request, no mixed versions."""

from __future__ import annotations

import threading

import httpx
import pytest

from cluster.artifacts import ArtifactStore
from deployments.rollout import live_version, rollback, rollout
from tests.deployments.versions import derive_version, rankings

QUERIES = [
    "what is botulism",
    "how long should you boil an egg",
    "symptoms of the flu",
    "capital of france",
    "how do vaccines work",
]


@pytest.fixture(scope="module")
def two_versions(serving, tiny_version, tmp_path_factory):
    """(A, B, {version: {query: doc_ids}}): A is live; B is published but not live."""
    settings, version_a, dir_a = tiny_version
    dir_b = derive_version(dir_a, tmp_path_factory.mktemp("derived") / "b")
    store = ArtifactStore.from_settings(settings)
    version_b = store.upload_version(dir_b, parent=version_a).version
    expected = {version_a: rankings(dir_a, QUERIES), version_b: rankings(dir_b, QUERIES)}
    assert expected[version_a] != expected[version_b]
    yield version_a, version_b, expected
    if live_version() != version_a:  # leave the app as other tests expect it
        rollout(settings, version_a)


class Load:
    """Closed-loop clients hitting /search until stopped; every response is kept."""

    def __init__(self, base_url: str, clients: int = 6):
        self.base_url = base_url
        self.stop = threading.Event()
        self.responses: list[tuple[str, int, dict | str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            i = offset
            while not self.stop.is_set():
                query = QUERIES[i % len(QUERIES)]
                i += 1
                try:
                    r = client.post("/search", json={"query": query, "mode": "dense"})
                    body = r.json() if r.status_code == 200 else r.text
                    self.responses.append((query, r.status_code, body))
                except httpx.HTTPError as err:
                    self.responses.append((query, 0, repr(err)))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def check(responses, expected) -> set[str]:
    """Every response succeeded and ranks exactly as its own version does in-process."""
    assert responses
    failures = [(q, status, body) for q, status, body in responses if status != 200]
    assert not failures, failures[:3]
    for query, _, body in responses:
        ids = [r["doc_id"] for r in body["results"]]
        assert ids == expected[body["version"]][query], (query, body["version"])
    return {body["version"] for _, _, body in responses}


def test_rollout_and_rollback_under_load(serving, two_versions):
    version_a, version_b, expected = two_versions
    store = ArtifactStore.from_settings(serving)
    assert live_version() == version_a

    with Load(serving.api_base_url) as load:
        assert rollout(serving, version_b) == version_b
        during_rollout = len(load.responses)
    assert during_rollout > 20
    assert check(load.responses, expected) == {version_a, version_b}
    assert live_version() == version_b and store.latest() == version_b

    with Load(serving.api_base_url) as load:
        assert rollback(serving) == version_a
    assert check(load.responses, expected) == {version_a, version_b}
    assert live_version() == version_a and store.latest() == version_a
