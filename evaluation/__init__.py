"""Event-level evaluation of the service's alerts against the synthetic truth, and the classical baseline detector.

Imports ``common`` (and, for streams, ``sim`` and ``serving``); nothing in the product imports it.
"""
