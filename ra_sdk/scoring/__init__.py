"""Anomaly scoring (DESIGN.md section 3)."""
