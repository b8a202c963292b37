"""The archive: the live service's frame step run over decades of full-disk magnetograms on a distributed engine
(Dask), into an emergence catalog (``fluxwatch-backfill``, :mod:`archive.cli`)."""
