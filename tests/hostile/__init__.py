"""Hostile input, request tricks, admin access and secrets (the "prove it" issue, parts 2 and 3)."""
