"""Where the CLI finds the Prefect API: `nightrec server` starts it, `nightrec serve` and
`nightrec backfill --via-deployment` talk to it."""

from __future__ import annotations

import os
import sys

import httpx

from tasks.errors import NightrecError
from tasks.settings import Settings


class ApiUnreachable(NightrecError, RuntimeError):
    """No Prefect server answers at the configured address."""

    hint = "`nightrec server` in another terminal, then `nightrec serve`"


def server_command(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The `prefect server start` command line and environment for this host's server.

    It binds to `ops.server_host` only (loopback by default) and sends no analytics.
    """
    argv = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        settings.ops.server_host,
        "--port",
        str(settings.ops.server_port),
    ]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return argv, env


def use_api(settings: Settings) -> str:
    """Point this process at the Prefect API (PREFECT_API_URL, else this host's server) and
    check that it answers. Call before Prefect reads its settings."""
    url = os.environ.get("PREFECT_API_URL") or settings.ops.api_url
    os.environ["PREFECT_API_URL"] = url
    try:
        httpx.get(f"{url}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise ApiUnreachable(
            f"no Prefect server answers at {url} ({type(exc).__name__}); "
            "start one with `nightrec server` or set PREFECT_API_URL"
        ) from None
    return url
