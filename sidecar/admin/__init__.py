"""The sidecar's own HTTP API on FastAPI: ``/metrics``, health, and ``/sidecar/v1/*``.

``api`` assembles the app behind the admin-token guard; one router module per resource (``ops``,
``sessions``, ``budgets``, ``fleet``, ``checkins``, ``alerts``), each given only the service it uses;
``errors`` maps every failure to Anthropic's error shape; ``docs`` serves the OpenAPI document and
Swagger UI from ``static/``.
"""
