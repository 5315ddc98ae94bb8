"""Presentation: text and HTML tables, plots."""
