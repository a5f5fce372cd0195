"""A process is known by its PID and its start time since boot, which no change of the
wall clock moves: a server recorded before the clock was stepped is still found and stopped."""

from __future__ import annotations

import json
import subprocess
import time

import psutil

from cluster.processes import ProcessRef, terminate


def test_a_process_is_known_by_its_start_since_boot_and_found_again_from_json():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        ref = ProcessRef.of(proc.pid)
        # Since boot, not since 1970: a stepped clock shifts psutil's create_time, not this.
        assert 0 < ref.started <= time.clock_gettime(time.CLOCK_BOOTTIME)
        assert ref.started < psutil.Process(proc.pid).create_time() - 1e9
        again = ProcessRef.from_json(json.loads(json.dumps(ref.to_json())))
        assert again == ref and again.process().pid == proc.pid
        # A PID file written by an older version holds the wall-clock creation time.
        legacy = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
        assert ProcessRef.from_json(legacy).alive()
        # The same PID with another start time is someone else's process.
        assert not ProcessRef(proc.pid, ref.started - 5).alive()
    finally:
        terminate([ProcessRef.of(proc.pid)], timeout=5)
        proc.wait(5)
    assert not ref.alive()
