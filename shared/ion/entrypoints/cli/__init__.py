"""The `ion` command."""
