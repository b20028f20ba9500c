"""The NumPy back end: its spelling of the elementwise functions (``spelling``)."""
