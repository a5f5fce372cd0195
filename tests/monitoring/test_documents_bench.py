"""`twotower bench --documents` against the running app: it measures what it says, and leaves
no document of its own behind."""

from __future__ import annotations

import re

import httpx
import psycopg
from rich.console import Console

from cluster.api_tokens import write_token
from monitoring.documents_bench import main
from tests.deployments.test_documents import settle

LEFT_BEHIND = """
SELECT count(*) FROM (
    SELECT DISTINCT ON (doc_id) op FROM document_log
     WHERE doc_id LIKE 'bench-%%' ORDER BY doc_id, seq DESC
) last WHERE op = 'upsert'
"""


def test_the_document_bench_reports_latency_and_write_load_and_cleans_up(serving):
    console = Console(record=True, width=400)
    main(serving, count=3, seconds=3.0, per_s=20.0, console=console)
    out = console.export_text()
    latency = re.search(r"upsert-to-searchable over (\d+) documents: p50 (\d+) ms", out)
    assert latency and int(latency[1]) == 3, out
    load = re.search(r"with (\d+) documents/s written \((\d+) failed batches\)", out)
    assert load and int(load[1]) > 0 and int(load[2]) == 0, out
    with psycopg.connect(serving.dsn) as conn:
        assert conn.execute(LEFT_BEHIND).fetchone()[0] == 0
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as api:
        settle(api, {"authorization": f"Bearer {write_token(serving)}"})  # for the next tests
