"""The observer's HTTP layer: a Flask app whose routes read only what TaskObserver exposes."""
