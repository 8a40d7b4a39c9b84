#!/usr/bin/python3
"""The order example's payment service, rewritten in Python with Debian's python3-pika.

Written from docs/wire-protocol.md alone: nothing here is taken from sagaflow's source. Everything
this service knows about sagaflow's wire format sits in the section "Wire protocol" below; the
rest is an ordinary RabbitMQ consumer with its own state in SQLite.

What it does, as the example's TypeScript participant does:
  ChargePayment  -> PaymentCharged (idempotent by order id), or PaymentDeclined when "decline"
                    is set, or PaymentUnavailable while the outage switch is on;
  RefundPayment  -> PaymentRefunded (refunds a charged payment once);
  SetPaymentOutage -> PaymentOutageSet.

It is a participant that does what a careful foreign service does for at-least-once delivery: an
inbox of its own (SQLite, in the same transaction as its business writes) so a command delivered
again is answered with the reply it stored the first time, byte for byte, and never applied twice.
For the conformance test it can also misbehave on purpose, the way a real network makes it:
  PAYMENT_DUPLICATE_EVERY=n  publishes every n-th reply twice;
  PAYMENT_REQUEUE_EVERY=n    "loses" the ack of every n-th command after replying (nack with
                             requeue), so the broker delivers it again.

Usage:
  payment_participant.py             run (environment below) until SIGTERM; prints one JSON line
                                     {"event": "payment-ready"} once consuming and
                                     {"event": "payment-stopped", ...counts} at the end
  payment_participant.py effects DB  prints the effects ledger of DB as JSON: [[orderId, kind], ...]

Environment: AMQP_URL, SAGAFLOW_NAMESPACE (as the sagaflow workers have it), PAYMENT_DB (SQLite
file), PAYMENT_DUPLICATE_EVERY, PAYMENT_REQUEUE_EVERY (0 = never).
"""

import json
import os
import signal
import sqlite3
import sys
import uuid

import pika

# ---------------------------------------------------------------------------------------------
# Wire protocol (docs/wire-protocol.md)
# ---------------------------------------------------------------------------------------------

PARTICIPANT = "payment"


def prefix(namespace):
    return namespace if namespace == "" or namespace[-1] in ".-_:" else namespace + "."


def queue_name(namespace):
    return prefix(namespace) + "participant." + PARTICIPANT


def parse_command(body, properties):
    env = json.loads(body.decode("utf-8"))
    return {"id": env["id"], "type": env["type"], "data": env["payload"], "envelope": env}


def build_reply(command, reply_type, data, namespace):
    import datetime
    import hashlib
    env = command["envelope"]
    h = hashlib.sha256((env["id"] + ":reply:" + PARTICIPANT).encode()).digest()
    rid = str(uuid.UUID(bytes=h[:16], version=4))
    reply = {
        "id": rid, "type": reply_type, "schemaVersion": 1, "tenantId": env["tenantId"],
        "correlationId": env["correlationId"], "causationId": env["id"], "sagaId": env.get("sagaId"),
        "occurredAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "headers": {k: v for k, v in env.get("headers", {}).items() if k.startswith("sagaflow-")},
        "payload": data,
    }
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=rid, type=reply_type)
    return prefix(namespace) + env["replyTo"], "", json.dumps(reply).encode("utf-8"), props


# ---------------------------------------------------------------------------------------------
# The payment service: state in SQLite, one transaction per command (inbox + business write).
# ---------------------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (message_id TEXT PRIMARY KEY, reply TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effects (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, kind TEXT NOT NULL);
"""


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    return db


def decide(db, command):
    """The business decision for one new command, written in the open transaction: (reply type, data)."""
    kind, data = command["type"], command["data"]
    if kind == "ChargePayment":
        order_id = data["orderId"]
        row = db.execute("SELECT payment_id FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        if row:  # the same order charged before (a retry with a new message id): charged once
            return "PaymentCharged", {"orderId": order_id, "paymentId": row[0]}
        outage = db.execute("SELECT value FROM settings WHERE key = 'outage'").fetchone()
        if outage and outage[0] == "true":
            return "PaymentUnavailable", {"orderId": order_id, "reason": "unavailable: payment gateway outage"}
        if data.get("decline"):
            return "PaymentDeclined", {"orderId": order_id, "reason": "card declined"}
        payment_id = str(uuid.uuid4())
        db.execute("INSERT INTO payments (order_id, payment_id, status) VALUES (?, ?, 'charged')", (order_id, payment_id))
        db.execute("INSERT INTO effects (order_id, kind) VALUES (?, 'charge')", (order_id,))
        return "PaymentCharged", {"orderId": order_id, "paymentId": payment_id}
    if kind == "RefundPayment":
        order_id = data["orderId"]
        done = db.execute("UPDATE payments SET status = 'refunded' WHERE order_id = ? AND status = 'charged'", (order_id,))
        if done.rowcount == 1:
            db.execute("INSERT INTO effects (order_id, kind) VALUES (?, 'refund')", (order_id,))
        return "PaymentRefunded", {"orderId": order_id}
    if kind == "SetPaymentOutage":
        down = bool(data["down"])
        db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('outage', ?)", ("true" if down else "false",))
        return "PaymentOutageSet", {"down": down}
    raise ValueError("not a payment command: %s" % kind)


def env_int(name):
    return int(os.environ.get(name, "0") or "0")


def run():
    namespace = os.environ.get("SAGAFLOW_NAMESPACE", "")
    db = open_db(os.environ["PAYMENT_DB"])
    duplicate_every = env_int("PAYMENT_DUPLICATE_EVERY")
    requeue_every = env_int("PAYMENT_REQUEUE_EVERY")
    counts = {"commands": 0, "applied": 0, "repeated": 0, "duplicatesSent": 0, "requeued": 0, "rejected": 0}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    channel.confirm_delivery()  # a reply counts as sent once the broker confirmed it
    channel.basic_qos(prefetch_count=20)
    ready = False
    for method, properties, body in channel.consume(queue_name(namespace), inactivity_timeout=0.2):
        if not ready:
            print(json.dumps({"event": "payment-ready"}), flush=True)
            ready = True
        if stopping:
            break
        if method is None:
            continue
        counts["commands"] += 1
        try:
            command = parse_command(body, properties)
        except (ValueError, KeyError, TypeError) as err:
            reject(channel, method, counts, err)
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.execute("SELECT reply FROM inbox WHERE message_id = ?", (command["id"],)).fetchone()
            if stored:
                reply = json.loads(stored[0])
                counts["repeated"] += 1
            else:
                try:
                    reply_type, data = decide(db, command)
                except (ValueError, KeyError, TypeError) as err:
                    db.execute("ROLLBACK")
                    reject(channel, method, counts, err)
                    continue
                exchange, routing_key, reply_body, props = build_reply(command, reply_type, data, namespace)
                reply = {"exchange": exchange, "routingKey": routing_key, "body": reply_body.decode("utf-8"), "properties": props_to_json(props)}
                db.execute("INSERT INTO inbox (message_id, reply) VALUES (?, ?)", (command["id"], json.dumps(reply)))
                counts["applied"] += 1
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        times = 2 if duplicate_every and counts["commands"] % duplicate_every == 0 else 1
        for _ in range(times):
            channel.basic_publish(reply["exchange"], reply["routingKey"], reply["body"].encode("utf-8"), props_from_json(reply["properties"]), mandatory=True)
        counts["duplicatesSent"] += times - 1
        if requeue_every and counts["commands"] % requeue_every == 0 and not method.redelivered:
            counts["requeued"] += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
        else:
            channel.basic_ack(method.delivery_tag)
        print(json.dumps({"event": "payment-progress", **counts}), flush=True)
    channel.cancel()
    connection.close()
    print(json.dumps({"event": "payment-stopped", **counts}), flush=True)


def reject(channel, method, counts, err):
    """A message this service can never handle: refused without requeue (the queue dead-letters it)."""
    print(json.dumps({"event": "payment-rejected", "error": str(err)}), file=sys.stderr, flush=True)
    counts["rejected"] += 1
    channel.basic_nack(method.delivery_tag, requeue=False)
    print(json.dumps({"event": "payment-progress", **counts}), flush=True)


PROPERTY_FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "message_id", "type", "timestamp", "app_id", "correlation_id")


def props_to_json(props):
    return {f: getattr(props, f) for f in PROPERTY_FIELDS if getattr(props, f) is not None}


def props_from_json(stored):
    return pika.BasicProperties(**stored)


def dump_effects(path):
    db = open_db(path)
    rows = db.execute("SELECT order_id, kind FROM effects ORDER BY id").fetchall()
    print(json.dumps([[order_id, kind] for order_id, kind in rows]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "effects":
        dump_effects(sys.argv[2])
    else:
        run()
