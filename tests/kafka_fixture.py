"""The session-wide real Kafka broker fixture.

Import it where tests need it, e.g. in ``tests/conftest.py``::

    from tests.kafka_fixture import kafka_broker  # noqa: F401

The first use fetches the broker's jars with Maven (once per checkout) and
starts one KRaft broker on free loopback ports in a temporary folder; it is
stopped when the session ends. Tests that stop or kill it must leave it
running again (``kafka_broker.restart()``).
"""
from __future__ import annotations

import pytest

from common.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> KafkaBroker:
    """A running single-node Kafka broker; ``kafka_broker.bootstrap`` is its address."""
    with KafkaBroker().start(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker
