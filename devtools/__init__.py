"""Developer and test support (the local Kafka broker for tests, the demo and benchmarks); not shipped in the wheel.

Imported from the repository root (pytest and ``python -m`` run there); deliberately left out of
``[tool.setuptools.packages.find]`` in ``pyproject.toml``.
"""
