"""Admin views of payouts."""
