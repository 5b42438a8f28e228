"""Embedded demo data."""
