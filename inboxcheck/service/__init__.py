"""inboxcheck's checks as an HTTP service (``inboxcheck serve``; the ``serve`` extra: FastAPI, uvicorn).

- ``settings.py``  ServiceSettings: the server's check options, tokens, limits (no global state)
- ``engine.py``    what every request shares, as a batch shares it: DNS cache, TLS context, slots
- ``http.py``      bounded body reads, the CLI's error document, a check that ends with its client
- ``app.py``       ``create_app(settings)``: the routers (checks, batches, operations), auth, access log
- ``batches.py``   the batch API (post, poll, stream, cancel), credentials in memory while it runs
- ``metrics.py``   the Prometheus text
- ``server.py``    uvicorn: log config without secrets, the drain on SIGTERM
- ``openapi.py``   the committed OpenAPI document (``inboxcheck/openapi.json``)

Imported only by ``inboxcheck serve`` and by code that wants the app: the CLI does not load FastAPI.
"""

from inboxcheck.service.app import create_app
from inboxcheck.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
