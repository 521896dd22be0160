"""How a call reaches Claude on each platform: how it is addressed, authenticated and its answer read.

The first-party API (``/v1/…``) is the proxy's own path, forwarded as it comes. Amazon Bedrock
(``/bedrock/…``, :mod:`.bedrock`, signed by :mod:`.aws_auth`) and Google Vertex AI (``/vertex/…``,
:mod:`.vertex`, tokens from :mod:`.google_auth`) are cloud routes: each provider reads a request into a
``core.cloud.CloudRoute`` (the model comes from the path), swaps the client's credentials for the
sidecar's, picks the parser of its answers and renders the sidecar's own errors in its shape. The proxy
reaches them only through its ``CloudProvider`` protocol; ``app`` wires them (:mod:`.config`).
"""
