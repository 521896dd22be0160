"""The sidecar's own HTTP API: ``/metrics``, health, and ``/sidecar/v1/*``, one module per resource."""
