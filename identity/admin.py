"""Admin views of identity."""
