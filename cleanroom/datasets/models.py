"""Models of datasets."""
