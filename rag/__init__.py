"""Archive assistant for a Japanese tech blog: ingest posts, search them, answer with citations."""

__version__ = "0.1.0"
