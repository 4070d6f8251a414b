"""Typed records, Arrow schemas and metrics: what the SDK hands to the writer, and how it becomes rows."""
