"""The embedded datasets, generated offline and deterministically (``generate``)."""
