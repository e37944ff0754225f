"""Admin views of portal."""
