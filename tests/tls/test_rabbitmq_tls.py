"""The RabbitMQ hop over amqps://: a private RabbitMQ node of the test's own listening for TLS with a
certificate from the test CA (tests/rabbitmq.py PrivateNode). The broker and the queue inspection
paycell builds pass with the CA (PAYCELL_TLS_CA_FILE) and refuse without it, or under another host
name, before any message is sent."""
from __future__ import annotations

import ssl

import msgspec
import pytest

from paycell.actors.broker import build_broker, send
from paycell.queues import open_queues
from tests import rabbitmq
from tests.tls.conftest import leaf_cert, write_leaf


@pytest.fixture(scope="module")
def tls_node(ca, ca_file, tmp_path_factory):
    if not rabbitmq.server_installed():
        pytest.skip("amqps test skipped: rabbitmq-server is not installed (it starts a private node)")
    cert_file, key_file = write_leaf(leaf_cert(ca, "localhost"), tmp_path_factory.mktemp("rabbitmq-tls"))
    node = rabbitmq.PrivateNode(tls=(cert_file, key_file, ca_file))
    try:
        node.start()
        yield node
    finally:
        node.destroy()


def _amqps(node, host: str = "localhost") -> str:
    return f"amqps://guest:guest@{host}:{node.tls_port}/%2F"


def test_amqps_with_the_ca_is_verified_and_carries_the_messages(tls_node, settings, ca_file):
    tls = msgspec.structs.replace(settings, broker_url=_amqps(tls_node), tls_ca_file=ca_file)
    broker, queues = build_broker(tls), open_queues(tls)
    try:
        send(broker, "screen", "no-user", "not-an-order")  # confirmed by RabbitMQ over TLS
        assert queues.depth("payments") == 1
    finally:
        queues.close()
        broker.close()


@pytest.mark.parametrize("case", ["without the CA", "under another host name"])
def test_amqps_refuses_an_unverified_server(tls_node, settings, ca_file, case):
    url = _amqps(tls_node, "127.0.0.1") if case == "under another host name" else _amqps(tls_node)
    tls = msgspec.structs.replace(settings, broker_url=url, tls_ca_file="" if case == "without the CA" else ca_file)
    broker, queues = build_broker(tls), open_queues(tls)
    try:
        # pika lets the handshake's own error through: an OSError, which the API answers with 503
        # and a step retries.
        with pytest.raises(ssl.SSLCertVerificationError):
            send(broker, "sweep")
        with pytest.raises(ssl.SSLCertVerificationError):
            queues.depth("payments")
    finally:
        queues.close()
        broker.close()
