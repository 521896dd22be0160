"""Dead-man checks and their alerts (SPEC R-DM-1..2).

``config`` parses the ``checks:`` / ``notify:`` sections and environment; ``checks`` and ``decide`` are
the pure logic (every function takes ``now``); ``store`` persists state in SQLite; ``notifiers`` deliver
to Alertmanager and webhooks; ``engine`` is the thin loop that ties them together.
"""
