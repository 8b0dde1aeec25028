"""Reporting: progress display, tables (and later HTML reports and plots)."""
