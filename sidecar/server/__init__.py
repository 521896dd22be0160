"""Listeners: the uvicorn servers, the HTTP protocol subclass, and the pure-ASGI dispatch
between proxy and admin."""
