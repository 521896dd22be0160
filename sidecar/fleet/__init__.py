"""WebSocket fleets: members hold a WebSocket to the sidecar and answer protocol pings (SPEC R-FL-1..2).

``registry`` keeps what is known about each member (pure bookkeeping, the caller passes the time);
``heartbeat`` is the one shared ping loop; ``server`` is the ``websockets`` listener that feeds both.
"""
