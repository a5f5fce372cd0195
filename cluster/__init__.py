"""The base floor: settings, the artifact and log stores, the Ray connection, metric
definitions and the embedded servers. It imports nothing of ours from the floors above."""

import os

# Read by Ray when it is first imported, which in every process of ours happens after this
# package is: without it a driver rewrites 127.0.0.1 to the machine's external address and
# cannot reach the local stack's head, which listens on loopback only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
