#!/usr/bin/python3
"""The order example's payment service, rewritten in Python with Debian's python3-pika.

Written from docs/wire-protocol.md ALONE: nothing here is taken from sagaflow's source. Everything
this service knows about sagaflow's wire format sits in the section "Wire protocol" below, each
rule with the doc's section number; the rest is an ordinary RabbitMQ consumer with its own state
in SQLite.

What it does, as the example's TypeScript participant does:
  ChargePayment  -> PaymentCharged (charged once per saga step), or PaymentDeclined when "decline"
                    is set, or PaymentUnavailable while the outage switch is on;
  RefundPayment  -> PaymentRefunded (refunds a charged payment once);
  SetPaymentOutage -> PaymentOutageSet.

It does what docs/wire-protocol.md asks of a participant for at-least-once delivery: an inbox of
its own (SQLite, in the same transaction as its business writes) so a command delivered again is
answered with the reply it stored the first time, and effects keyed by saga, step and phase so a
retried step is not applied twice. The business decisions are the order example's
(examples/order), not the protocol's: what is declined, and the reason texts, among them the
"unavailable" prefix the example's saga retries a PaymentUnavailable on (a rule of that saga that
the wire protocol does not carry). For the conformance test it also misbehaves on
purpose, the way a real network makes services do:
  PAYMENT_DUPLICATE_EVERY=n  publishes every n-th reply twice, the copy re-serialised (a new
                             time, other key order: the same meaning, so a duplicate);
  PAYMENT_REQUEUE_EVERY=n    "loses" the ack of every n-th command after replying (nack with
                             requeue), so the broker delivers it again.

Usage:
  payment_participant.py             run (environment below) until SIGTERM; prints one JSON line
                                     {"event": "payment-ready"} once consuming, one
                                     {"event": "payment-progress", ...counts} per message and
                                     {"event": "payment-stopped", ...counts} at the end
  payment_participant.py effects DB  prints the effects ledger of DB as JSON: [[orderId, kind], ...]

Environment: AMQP_URL, SAGAFLOW_NAMESPACE (as the sagaflow workers have it), PAYMENT_DB (SQLite
file), PAYMENT_DUPLICATE_EVERY, PAYMENT_REQUEUE_EVERY (0 = never).
"""

import datetime
import json
import os
import signal
import sqlite3
import sys
import uuid

import pika

# ---------------------------------------------------------------------------------------------
# Wire protocol: everything below comes from docs/wire-protocol.md (section numbers in brackets).
# ---------------------------------------------------------------------------------------------

PARTICIPANT = "payment"
SOURCE = "/conformance/payment-python"  # [3.1] "source": who produced it, our own name
# [3.2] structured mode: the whole event is the JSON body
STRUCTURED = "application/cloudevents+json; charset=utf-8"
# [4.4] reply ids derive from the command id, "UUIDv5 ... in a namespace of your choice"
REPLY_ID_NAMESPACE = uuid.UUID("0b7c1e52-3f0a-4a8e-9d55-6c2b3a1f9e07")
# [3.1, 4.4] attributes a reply copies from its command when present
ECHOED = ("sagaid", "tenantid", "correlationid", "step", "phase", "attempt", "seq", "sagatype", "traceparent", "tracestate")


def prefix(namespace):
    """[1] A non-empty namespace ns becomes ns. unless it already ends in . - _ (RabbitMQ also :)."""
    return namespace if namespace == "" or namespace[-1] in ".-_:" else namespace + "."


def queue_name(namespace):
    """[2, 4.1] participant P reads queue <ns>participant.<P>, declared by sagaflow (not by us)."""
    return prefix(namespace) + "participant." + PARTICIPANT


def parse_command(body, properties):
    """[3.2] A structured-mode event -> dict with the lower-cased id [4.2], type and data.

    sagaflow writes structured mode only, so that is all a participant must read; anything else is
    refused (the queue dead-letters it). Unknown attributes are ignored [3.1].
    """
    content_type = (properties.content_type or "").split(";")[0].strip().lower()
    if content_type not in ("", "application/json") and not content_type.endswith("+json"):
        raise ValueError("content type %s is not JSON" % content_type)
    event = json.loads(body.decode("utf-8"))
    if not isinstance(event, dict) or event.get("specversion") != "1.0":
        raise ValueError("not a CloudEvents 1.0 structured event")
    for required in ("id", "source", "type"):
        if not isinstance(event.get(required), str) or not event[required]:
            raise ValueError("attribute %s missing" % required)
    if not isinstance(event.get("data"), dict):
        raise ValueError("data is not an object")
    if int(event.get("schemaversion", 1)) != 1:  # [3.1] a major version we do not know is refused
        raise ValueError("schemaversion %s unknown" % event.get("schemaversion"))
    if not event.get("replyto"):  # [4.5] never reply to a command without replyto
        raise ValueError("command without replyto")
    return {"id": event["id"].lower(), "type": event["type"], "data": event["data"], "event": event}


def idempotency_key(command):
    """[4.3] an effect is keyed by sagaid + step + phase, so a retried step (new id) finds it done."""
    event = command["event"]
    return "%s:%s:%s" % (str(event.get("sagaid", "")).lower(), event.get("step", command["type"]), event.get("phase", ""))


def build_reply(command, reply_type, data, namespace, now=None):
    """[4.4] -> (exchange, routing key, body, properties) of the one reply to `command`."""
    event = command["event"]
    reply = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(REPLY_ID_NAMESPACE, "%s:reply:%s" % (command["id"], PARTICIPANT))),
        "source": SOURCE,
        "type": reply_type,
        "time": now or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "schemaversion": 1,
        "causationid": event["id"],
        "data": data,
    }
    for name in ECHOED:
        if name in event:
            reply[name] = event[name]
    # [2] publish to exchange <ns><replyto>; the routing key is ignored; persistent, confirmed, mandatory
    properties = pika.BasicProperties(content_type=STRUCTURED, delivery_mode=2, message_id=reply["id"], type=reply_type)
    return prefix(namespace) + event["replyto"], event["replyto"], json.dumps(reply).encode("utf-8"), properties


def reserialised(body):
    """[4] the same reply with a new time and its keys in another order: the same meaning, so the
    orchestrator's inbox must take it for a duplicate, not an ID_CONFLICT."""
    event = json.loads(body.decode("utf-8"))
    event["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return json.dumps(dict(reversed(list(event.items()))), indent=1).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The payment service: state in SQLite, one transaction per command (inbox + business write).
# ---------------------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (message_id TEXT PRIMARY KEY, reply TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (idempotency_key TEXT PRIMARY KEY, reply_type TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (payment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effects (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, kind TEXT NOT NULL);
"""


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    return db


def decide(db, command):
    """The business decision for one new command, written in the open transaction: (reply type, data).

    A step already done (a retry of it with a new command id) gets the answer it got the first time;
    only decisions with an effect are kept for that (a decline or an outage is decided again).
    """
    kind, data = command["type"], command["data"]
    key = idempotency_key(command)
    done = db.execute("SELECT reply_type, data FROM steps WHERE idempotency_key = ?", (key,)).fetchone()
    if done:
        return done[0], json.loads(done[1])
    if kind == "ChargePayment":
        order_id = data["orderId"]
        outage = db.execute("SELECT value FROM settings WHERE key = 'outage'").fetchone()
        if outage and outage[0] == "true":
            return "PaymentUnavailable", {"orderId": order_id, "reason": "unavailable: payment gateway outage"}
        if data["decline"]:
            return "PaymentDeclined", {"orderId": order_id, "reason": "card declined"}
        payment_id = str(uuid.uuid4())
        db.execute("INSERT INTO payments (payment_id, order_id, status) VALUES (?, ?, 'charged')", (payment_id, order_id))
        db.execute("INSERT INTO effects (order_id, kind) VALUES (?, 'charge')", (order_id,))
        answer = ("PaymentCharged", {"orderId": order_id, "paymentId": payment_id})
    elif kind == "RefundPayment":
        order_id = data["orderId"]
        refunded = db.execute("UPDATE payments SET status = 'refunded' WHERE payment_id = ? AND status = 'charged'", (data["paymentId"],))
        if refunded.rowcount == 1:
            db.execute("INSERT INTO effects (order_id, kind) VALUES (?, 'refund')", (order_id,))
        answer = ("PaymentRefunded", {"orderId": order_id})
    elif kind == "SetPaymentOutage":
        down = bool(data["down"])
        db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('outage', ?)", ("true" if down else "false",))
        return "PaymentOutageSet", {"down": down}
    else:
        raise ValueError("not a payment command: %s" % kind)
    db.execute("INSERT INTO steps (idempotency_key, reply_type, data) VALUES (?, ?, ?)", (key, answer[0], json.dumps(answer[1])))
    return answer


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
        body = reply["body"].encode("utf-8")
        channel.basic_publish(reply["exchange"], reply["routingKey"], body, props_from_json(reply["properties"]), mandatory=True)
        if duplicate_every and counts["commands"] % duplicate_every == 0:
            channel.basic_publish(reply["exchange"], reply["routingKey"], reserialised(body), props_from_json(reply["properties"]), mandatory=True)
            counts["duplicatesSent"] += 1
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
