"""Models of queries."""
