"""SQLite: one file in WAL mode, for the embedded mode."""
