"""The SQLite backend (ION_BACKEND=embedded): one database file for everything."""
