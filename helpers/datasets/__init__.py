"""The embedded datasets, generated offline and deterministically (``generate``), and public
datasets fetched the Keras way (``fetch``)."""
