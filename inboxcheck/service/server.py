"""Running the app under uvicorn: logging that carries no secret, and a bounded drain on SIGTERM.

uvicorn's own access log is off (it writes the query string); the app's access logger writes
method, path and status (:mod:`inboxcheck.service.app`). On SIGTERM (or SIGINT) the server stops
taking connections and new checks (503), cancels the running batches, gives the requests in flight
``drain_seconds`` to finish, then cancels what is left (each check's logins closed on the way out).
"""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

import uvicorn

from inboxcheck.service.app import ACCESS_LOGGER, create_app
from inboxcheck.service.engine import Engine
from inboxcheck.service.settings import ServiceSettings

__all__ = ["LOG_CONFIG", "serve"]

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        # Off: its lines carry the query string. The app's own access logger replaces it.
        "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        ACCESS_LOGGER: {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app that it drains the moment the signal comes."""

    def __init__(self, config: uvicorn.Config, engine: Engine, batches: Any) -> None:
        super().__init__(config)
        self.engine = engine
        self.batches = batches

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.engine.draining = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.batches.close()))
        super().handle_exit(sig, frame)


def serve(settings: ServiceSettings, *, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=LOG_CONFIG,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, round(settings.drain_seconds)),
        lifespan="on",
    )
    _Server(config, app.state.engine, app.state.batches).run()
