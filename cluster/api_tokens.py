"""The API's write token: configured in settings, else (local mode) generated once into
``<state_dir>/secrets/api-write.token``, 0600. `twotower up` makes it and says where; the
ingress replicas read the same file."""

from __future__ import annotations

from cluster.config import Settings
from cluster.processes import local_secret


def write_token(settings: Settings) -> str:
    if settings.api_write_token is not None:
        return settings.api_write_token.get_secret_value()
    return local_secret(settings.write_token_file)  # production mode requires the setting
