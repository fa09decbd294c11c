"""replayer: replay NDJSON session records into Leanplum's `start` API in bulk."""

__version__ = "0.1.0"
