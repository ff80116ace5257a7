#!/usr/bin/env python3
"""Interoperability: a third-party Kafka client writes seed-format events.

A user's existing Python producer (confluent-kafka, the seed's client) sends
events exactly as the seed's activity_producer.py did - json.dumps, key =
user_id, timestamps from datetime.isoformat() - to `activity-tracker broker`.
Our `analytics` and `fraud` processes, started as a user would, must process
them: the analytics report counts every event, the fraud detector publishes
the HIGH_VELOCITY alert for the bot, and a malformed message lands in the
dead-letter topic instead of stopping anything.

Usage: seed_producer_test.py PATH/TO/activity-tracker
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, Producer

BINARY = sys.argv[1]
DEADLINE_S = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def get_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())
    except Exception:
        return None


def seed_event(user, event_type, when, **properties):
    """An event as the seed's producer built it."""
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": when.isoformat(),
        "user_id": user,
        "session_id": str(uuid.uuid4()),
        "event_type": event_type,
        "page_url": "https://shop.example.com/products/laptop",
        "referrer": None,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "ip_address": "192.168.1.100",
        "properties": properties,
        "device": {"type": "desktop", "os": "Linux", "browser": "Firefox"},
        "location": {"country": "US", "city": "New York", "timezone": "America/New_York"},
    }


def main():
    env = dict(os.environ, LOG_LEVEL="WARNING", KAFKA_SESSION_TIMEOUT_MS="6000", DRAIN_TIMEOUT="5s")
    procs = []
    try:
        broker = subprocess.Popen([BINARY, "broker"], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(broker)
        first = broker.stdout.readline().strip()
        assert first.startswith("KAFKA_BOOTSTRAP_SERVERS="), first
        bootstrap = first.split("=", 1)[1]
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap

        ports = {"analytics": free_port(), "fraud": free_port()}
        for name, port in ports.items():
            p = subprocess.Popen(
                [BINARY, name],
                env=dict(env, HTTP_ADDR=f"127.0.0.1:{port}"),
                stdout=subprocess.DEVNULL,
            )
            procs.append(p)

        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        now = datetime.now(timezone.utc)
        events = []
        # An ordinary shopper.
        events += [
            seed_event("user-1001", "page_view", now),
            seed_event("user-1001", "click", now + timedelta(seconds=5)),
            seed_event("user-1001", "add_to_cart", now + timedelta(seconds=9), product_id="prod-002", price=24.99, cart_value=24.99),
            seed_event("user-1001", "add_to_cart", now + timedelta(seconds=12), product_id="prod-004", price=39.99, cart_value=64.98),
            seed_event("user-1001", "purchase", now + timedelta(seconds=20), cart_value=64.98),
        ]
        # A bot: eight cart additions in 16 seconds.
        events += [
            seed_event("user-6666", "add_to_cart", now + timedelta(seconds=2 * i), product_id="prod-020", price=25.0, cart_value=25.0 * (i + 1))
            for i in range(8)
        ]
        for e in events:
            producer.produce("user-activities", key=e["user_id"], value=json.dumps(e))
        producer.produce("user-activities", key="user-1001", value=b'{"event_id": "truncated...')
        assert producer.flush(30) == 0, "all events delivered"
        del producer

        valid = len(events)
        wait_until(
            "the analytics report to count every valid event",
            lambda: (get_json(ports["analytics"], "/report") or {}).get("total_events") == valid,
        )
        report = get_json(ports["analytics"], "/report")
        assert report["event_types"]["add_to_cart"] == 10, report["event_types"]
        assert report["purchase_count"] == 1
        assert abs(report["revenue_total"] - 64.98) < 1e-9, report["revenue_total"]
        assert report["consumer"]["events_rejected"] == 1, report["consumer"]

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-check", "auto.offset.reset": "earliest"})
        consumer.subscribe(["fraud-alerts"])
        alerts = []
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and not any(a["rule"] == "HIGH_VELOCITY" for a in alerts):
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                alerts.append(json.loads(m.value()))
        consumer.close()
        velocity = [a for a in alerts if a["rule"] == "HIGH_VELOCITY"]
        assert len(velocity) == 1 and velocity[0]["user_id"] == "user-6666", alerts
        assert velocity[0]["event_id"] == events[5 + 4]["event_id"], "raised at the bot's 5th cart addition"

        dlq = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-dlq", "auto.offset.reset": "earliest"})
        dlq.subscribe(["user-activities-dlq"])
        reasons = set()
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and len(reasons) < 1:
            m = dlq.poll(0.5)
            if m is not None and m.error() is None:
                reasons.add(dict(m.headers())["dlq.reason"].decode())
        dlq.close()
        assert reasons == {"malformed_json"}, reasons

        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
        for p in procs[1:]:
            assert p.wait(timeout=30) == 0, f"{p.args} exited {p.returncode}"
        print(f"interop: {valid} seed-format events from confluent-kafka processed; "
              f"HIGH_VELOCITY raised for user-6666; malformed message dead-lettered")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
