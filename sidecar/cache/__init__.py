"""The prompt cache feature: the planner's settings and its application to a request body.

Pure planning, busting detection and effect accounting live in ``sidecar.core.cache_*``.
"""
