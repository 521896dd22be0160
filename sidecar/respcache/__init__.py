"""The response cache (SPEC §19): answers repeated ``POST /v1/messages`` requests from a store.

``config`` (which calls: mode per deployment, app and request), ``key`` (what makes two requests the same),
``entry`` (a stored answer and the form a hit sends), ``flight`` (one upstream call for a burst of
identical requests), ``call`` (one call's part), ``service`` (what the policies call), and the backends:
``sqlite_store`` (embedded, bounded by bytes) and ``redis_store`` (shared by replicas). The pure
renderers between a stored stream and a stored JSON message live in ``sidecar.sansio.replay``.
"""
