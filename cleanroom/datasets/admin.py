"""Admin views of datasets."""
