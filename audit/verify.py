"""Placeholder: the audit capability implements this (no Django imports here)."""
