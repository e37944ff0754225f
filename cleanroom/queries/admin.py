"""Admin views of queries."""
