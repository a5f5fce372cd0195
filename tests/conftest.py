"""Shared fixtures live in tests/fixtures/, one module per subsystem: real servers on free ports."""

pytest_plugins = [
    "tests.fixtures.services",  # PostgreSQL, S3 (SeaweedFS), a local Ray, Settings pointing at them
    "tests.fixtures.model",  # a small trained version published to the S3 fixture
    "tests.fixtures.serving",  # the Serve app deployed on the local Ray
]
