"""Small OS-level helpers shared by the stores and the recorder (scheduling, SQLite connections)."""
