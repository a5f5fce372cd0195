"""`twotower corpus import|list|show`: the real command against the session's real S3."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

TWOTOWER = str(Path(sys.executable).parent / "twotower")
GOOD = b'{"id": 1, "text": "first"}\n{"id": 2, "text": "second", "title": "T"}\n'
BAD = GOOD + b'{"id": 1, "text": "again"}\n{"id": 3, "text": "  "}\n{"id": 4}\n'


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # the settings fixture exported TWOTOWER_*
    result = subprocess.run([TWOTOWER, *args], env=env, capture_output=True, text=True, timeout=120)
    print(f"$ twotower {' '.join(args)} (rc={result.returncode})\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture
def name(settings) -> str:
    """A corpus name of its own: the session's bucket is shared with other tests."""
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_a_bad_file_is_refused_with_its_problems(name, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(BAD)
    result = run("corpus", "import", str(path), "--name", name, "--no-progress")
    assert result.returncode == 1
    assert "line 3: duplicate_id" in result.stderr
    assert "line 4: empty_text" in result.stderr and "line 5: missing_field" in result.stderr
    assert "3 bad rows: missing_field 1, empty_text 1, duplicate_id 1" in result.stderr
    assert "--skip-bad" in result.stderr and "Traceback" not in result.stderr

    shown = run("corpus", "show", name)
    assert shown.returncode == 1
    lines = shown.stderr.strip().splitlines()
    assert lines == [
        f"twotower: no corpus named '{name}'",
        "hint: `twotower corpus list` shows the stored corpora (--debug shows the traceback)",
    ]

    skipped = run("corpus", "import", str(path), "--name", name, "--skip-bad", "--no-progress")
    assert skipped.returncode == 0
    assert f"imported 2 documents as {name}/s" in skipped.stdout
    assert "left out 3 bad rows" in skipped.stdout


def test_import_list_and_show(name, tmp_path):
    path = tmp_path / "docs.csv"
    path.write_bytes(b"pid,body\n1,first\n2,second\n3,third\n")
    result = run(
        "corpus", "import", str(path), "--name", name, "--id-field", "pid", "--text-field", "body"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"imported 3 documents as {name}/s")
    snapshot = result.stdout.split(f"{name}/")[1].split()[0]
    assert "rows" in result.stderr  # the progress bar, on stderr

    listed = run("corpus", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert snapshot in row and " 3 " in row and "docs.csv" in row

    shown = run("corpus", "show", name)
    assert shown.returncode == 0
    assert f"snapshot   {snapshot} (latest)" in shown.stdout
    assert "documents  3" in shown.stdout and "id=pid, text=body" in shown.stdout
    assert "documents.jsonl.gz" in shown.stdout and "sha256" in shown.stdout

    other = run("corpus", "show", name, "--snapshot", "s20000101-000000-beef")
    assert other.returncode == 1 and f"corpus '{name}' has no snapshot" in other.stderr


def test_file_and_name_errors_are_one_line(name, tmp_path):
    missing = run("corpus", "import", str(tmp_path / "nope.jsonl"), "--name", name)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"twotower: no such file: {tmp_path / 'nope.jsonl'}\n")
    assert len(missing.stderr.strip().splitlines()) == 2

    path = tmp_path / "ok.jsonl"
    path.write_bytes(GOOD)
    bad_name = run("corpus", "import", str(path), "--name", "Not OK")
    assert bad_name.returncode == 1 and "invalid corpus name 'Not OK'" in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) == 2
