"""Dramatiq's RabbitMQ broker declaring quorum queues (PAYCELL_RABBITMQ_QUEUE_TYPE=quorum).

Dramatiq declares classic queues and has no option for the queue type, so this subclass adds
`x-queue-type: quorum` to the arguments of the three queues it declares per queue name (the queue
and its delay queue take theirs from `_build_queue_arguments`, the dead-letter queue is declared
apart). It overrides two of Dramatiq's private methods: dramatiq is pinned (pyproject.toml), and
tests/test_rabbitmq_operations.py checks that the queues RabbitMQ holds are quorum queues.
Quorum queues refuse priorities (paycell sets none) and global QoS (Dramatiq's is per channel).
"""
from __future__ import annotations

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name

QUORUM = {"x-queue-type": "quorum"}


class QuorumRabbitmqBroker(RabbitmqBroker):
    def _build_queue_arguments(self, queue_name):
        return {**super()._build_queue_arguments(queue_name), **QUORUM}

    def _declare_xq_queue(self, queue_name):
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True,
                                          arguments={"x-message-ttl": DEAD_MESSAGE_TTL, **QUORUM})
