#!/usr/bin/env bash
# Starts the local PostgreSQL and RabbitMQ when they are installed but stopped (machines without
# Docker). With Docker, or with TEST_DATABASE_URL / AMQP_URL pointing elsewhere, there is nothing
# to do: the test setup takes its services from there. Kafka is started by the test setup itself.
set -uo pipefail

if [ -z "${TEST_DATABASE_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "ensure-services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 || echo "ensure-services: PostgreSQL is not answering on 127.0.0.1:5432"
fi

if [ -z "${AMQP_URL:-}" ] && command -v rabbitmqctl >/dev/null 2>&1; then
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "ensure-services: starting RabbitMQ"
    rabbitmq-server -detached || true
    rabbitmqctl -q --timeout 120 await_startup || echo "ensure-services: RabbitMQ did not start"
  fi
fi
exit 0
