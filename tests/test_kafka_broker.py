"""The real single-node Kafka broker: produce/consume, compaction, restart and crash."""
from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.serializer import DefaultSerializer, JsonSerializer

from devtools.kafka_broker import KafkaBroker, KafkaBrokerError


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _produce(bootstrap: str, topic: str, items: list[tuple[str, dict]]) -> None:
    """Send JSON ``(key, value)`` pairs with acks='all' and wait for every ack."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all",
        key_serializer=DefaultSerializer(), value_serializer=JsonSerializer(),
    )
    try:
        for fut in [producer.send(topic, key=k, value=v) for k, v in items]:
            fut.get(timeout=30)
    finally:
        producer.close()


def _read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[str, dict]]:
    """Every record of partition 0 of ``topic``, from the first offset to the end."""
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        key_deserializer=DefaultSerializer(), value_deserializer=JsonSerializer(),
    )
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out, deadline = [], time.monotonic() + timeout
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for rec in consumer.poll(timeout_ms=500).get(tp, []):
                out.append((rec.key, rec.value))
        assert consumer.position(tp) >= end, f"read {len(out)} records, not up to offset {end}"
        return out
    finally:
        consumer.close()


def test_produce_and_consume_json_in_a_group(kafka_broker):
    topic = _topic("alerts")
    kafka_broker.create_topic(topic, partitions=2)
    sent = [(f"patch-{i}", {"patch": i, "p": i / 10}) for i in range(6)]
    _produce(kafka_broker.bootstrap, topic, sent)

    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_broker.bootstrap, group_id="scorers",
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10_000,
        key_deserializer=DefaultSerializer(), value_deserializer=JsonSerializer(),
    )
    got = []
    for rec in consumer:
        got.append((rec.key, rec.value))
        if len(got) == len(sent):
            break
    consumer.commit()
    committed = {tp.partition: consumer.committed(tp) for tp in consumer.assignment()}
    consumer.close()
    assert sorted(got) == sorted(sent)
    assert sum(committed.values()) == len(sent)


def test_compacted_topic_keeps_the_last_value_per_key(kafka_broker):
    topic = _topic("state")
    # Tiny segments and no dirty-ratio threshold, so the cleaner runs within seconds.
    kafka_broker.create_topic(topic, compacted=True, config={
        "segment.ms": "100", "min.cleanable.dirty.ratio": "0.001", "min.compaction.lag.ms": "0",
    })
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert configs["topic"][topic]["cleanup.policy"]["value"] == "compact"

    _produce(kafka_broker.bootstrap, topic, [(k, {"v": v}) for v in range(5) for k in "abc"])
    time.sleep(0.3)  # older than segment.ms: the next append rolls the segment
    _produce(kafka_broker.bootstrap, topic, [("z", {"v": 0})])

    deadline = time.monotonic() + 45
    while True:
        records = _read_all(kafka_broker.bootstrap, topic)
        if len(records) == 4 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert records == [("a", {"v": 4}), ("b", {"v": 4}), ("c", {"v": 4}), ("z", {"v": 0})]


def test_messages_survive_a_clean_restart(kafka_broker):
    topic = _topic("persist")
    kafka_broker.create_topic(topic)
    sent = [(f"k{i}", {"i": i}) for i in range(3)]
    _produce(kafka_broker.bootstrap, topic, sent)
    bootstrap = kafka_broker.bootstrap

    kafka_broker.restart()
    assert kafka_broker.bootstrap == bootstrap
    assert _read_all(kafka_broker.bootstrap, topic) == sent


def test_acked_messages_survive_a_crash(kafka_broker):
    topic = _topic("crash")
    kafka_broker.create_topic(topic)
    sent = [(f"k{i}", {"i": i}) for i in range(3)]
    _produce(kafka_broker.bootstrap, topic, sent)

    kafka_broker.kill()
    assert not kafka_broker.running
    kafka_broker.restart()
    assert _read_all(kafka_broker.bootstrap, topic) == sent


def test_start_refuses_a_data_dir_in_use_and_a_taken_port(kafka_broker, tmp_path):
    with pytest.raises(KafkaBrokerError, match="already running"):
        KafkaBroker().start(kafka_broker.data_dir)
    with pytest.raises(KafkaBrokerError, match=f"127.0.0.1:{kafka_broker.port} is in use"):
        KafkaBroker().start(tmp_path / "other", port=kafka_broker.port)
