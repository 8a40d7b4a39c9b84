#!/usr/bin/env bash
# RabbitMQ's configuration from the environment variables the official image honours, written at
# every start (the file lives in the image, not in the data volume).
set -Eeuo pipefail
{
  echo 'listeners.tcp.default = 5672'
  echo 'management.tcp.port = 15672'
  # As in the official image: the default user may connect from other hosts (guest included).
  echo 'loopback_users.guest = false'
  if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then echo "default_user = ${RABBITMQ_DEFAULT_USER}"; fi
  if [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then echo "default_pass = ${RABBITMQ_DEFAULT_PASS}"; fi
  if [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ]; then echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST}"; fi
} > /etc/rabbitmq/rabbitmq.conf
exec "$@"
