"""Services of this app (placeholder until its capability lands)."""
