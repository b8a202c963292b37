"""The alert contract, a package of its own (pydantic only): what fluxwatch publishes and how it may change.

:mod:`contract.events` holds the typed models (scores, alert events, patch status, the HTTP API's bodies) and
the published JSON Schemas they generate (``python -m contract.events [--check]`` writes or checks
``deploy/schemas/``); :mod:`contract.compat` holds the compatibility rule between two versions of a schema.
The service, the review desk, the evaluation, the archive and the example consumer all read events through it.
"""
