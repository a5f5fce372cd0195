"""The served API against its own /openapi.json: schemathesis with every check (server errors,
status codes, content types, response schemas, schema-valid requests accepted, invalid ones
rejected, unsupported methods, the link from a search to its feedback), on loopback against
the test app. Bounded by --max-examples per operation (about a minute here); a fixed seed
makes a failure reproducible with the command it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
MAX_EXAMPLES = 60
SEED = 1


def test_the_api_keeps_every_promise_of_its_schema(serving, tmp_path):
    command = [
        SCHEMATHESIS, "run", f"{serving.api_base_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = result.stdout[result.stdout.find("SUMMARY") - 40 :]
    print(f"\n$ {' '.join(command[1:])}\n{summary}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
