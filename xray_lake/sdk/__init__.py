"""The instrumentation side: decorators, context managers and the current run."""
