"""How long from the acknowledged click that completes the click memory's evidence to a search
showing the result moved: `click_memory_min_sessions` people (distinct addresses) click the
4th result of a query nobody asked yet, then searches poll every 0.1 s through the front door
(both ingress replicas answer). On loopback, against the running stack, bounded in count:

    python -m experiments.click_to_moved [QUERIES=10]
"""

import statistics
import sys
import time

import httpx

from cluster.config import get_settings
from learning.splits import dev_split

settings = get_settings()
queries = list(dev_split().held_out.values())[: int(sys.argv[1]) if len(sys.argv) > 1 else 10]
lat = []
with httpx.Client(base_url=settings.api_base_url, timeout=30) as http:
    for n, query in enumerate(queries):
        first = http.post("/search", json={"query": query, "k": 10}).json()
        target = first["results"][3]["doc_id"]
        for i in range(settings.click_memory_min_sessions):
            who = {"x-real-ip": f"198.51.100.{(7 * n + i) % 250 + 1}"}
            s = http.post(
                "/search", json={"query": query, "k": 10, "session_id": f"mv-{n}-{i}"}, headers=who
            ).json()
            assert s["results"][3]["doc_id"] == target, "ranking changed under us"
            r = http.post(
                "/feedback",
                json={"search_id": s["search_id"], "doc_id": target, "kind": "click"},
                headers=who,
            )
            r.raise_for_status()
        acked = time.monotonic()
        while time.monotonic() - acked < 10:
            a = http.post("/search", json={"query": query, "k": 10}).json()
            ranks = [x["doc_id"] for x in a["results"]]
            if target in ranks and ranks.index(target) < 3:
                lat.append(time.monotonic() - acked)
                break
            time.sleep(0.1)
        else:
            lat.append(float("inf"))
print(
    f"{len(lat)} queries; moved within 10 s: {sum(x < 10 for x in lat)}; seconds "
    f"p50 {statistics.median(lat):.2f}, max {max(lat):.2f}: {[round(x, 2) for x in lat]}"
)
