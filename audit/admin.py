"""Admin views of audit."""
