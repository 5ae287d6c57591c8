"""MQTT 5 features checked with paho-mqtt (Eclipse's Python client) against a running
broker. Each check prints one JSON line {"check": NAME, ...observed}; the Rust test
(tests/mqtt5.rs) asserts on them. Usage: python3 v5_paho.py HOST PORT"""
import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST, PORT = sys.argv[1], int(sys.argv[2])
RUN = str(os.getpid())


class Client:
    def __init__(self, name):
        self.got = []
        self.lock = threading.Lock()
        # SUBACK reason codes by message id; the callback may run before
        # subscribe() has returned the id, so waiters look here under `acked`.
        self.subacks = {}
        self.acked = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{RUN}",
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self.on_message
        self.c.on_subscribe = self.on_subscribe
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.connect(HOST, PORT, clean_start=True)
        self.c.loop_start()
        assert connected.wait(5), "no CONNACK"

    def on_message(self, _c, _u, msg):
        props = msg.properties
        with self.lock:
            self.got.append({
                "topic": msg.topic, "payload": msg.payload.decode(errors="replace"),
                "qos": msg.qos, "retain": bool(msg.retain),
                "ids": sorted(getattr(props, "SubscriptionIdentifier", []) or []),
                "response_topic": getattr(props, "ResponseTopic", None),
                "correlation": (getattr(props, "CorrelationData", b"") or b"").decode(),
            })

    def on_subscribe(self, _c, _u, mid, reason_codes, _props):
        with self.acked:
            self.subacks[mid] = [int(rc.value) for rc in reason_codes]
            self.acked.notify_all()

    def subscribe(self, filter_, qos=1, ident=None, **options):
        props = Properties(PacketTypes.SUBSCRIBE)
        if ident:
            props.SubscriptionIdentifier = ident
        _, mid = self.c.subscribe((filter_, SubscribeOptions(qos=qos, **options)),
                                  properties=props if ident else None)
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.subacks, 5), "no SUBACK"
            return self.subacks.pop(mid)

    def publish(self, topic, payload, qos=1, retain=False, **props):
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)
            for key, value in props.items():
                setattr(properties, key, value)
        self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties).wait_for_publish(5)

    def collect(self, seconds=0.5):
        time.sleep(seconds)
        with self.lock:
            got, self.got = self.got, []
        return got

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def report(check, **value):
    print(json.dumps({"check": check, **value}), flush=True)


a, b = Client("paho-a"), Client("paho-b")

a.subscribe(f"ids/{RUN}/+", qos=1, ident=3)
a.subscribe(f"ids/{RUN}/#", qos=0, ident=5)
b.publish(f"ids/{RUN}/x", "both", qos=1)
report("subscription_ids", got=a.collect())

b.subscribe(f"nl/{RUN}", qos=1, noLocal=True)
b.publish(f"nl/{RUN}", "own", qos=1)
report("no_local", got=b.collect())

b.publish(f"rh/{RUN}", "kept", qos=1, retain=True)
report("retain_handling_2", codes=a.subscribe(f"rh/{RUN}", qos=1, retainHandling=2), got=a.collect())
report("retain_on_subscribe", codes=a.subscribe(f"rh/{RUN}/#", qos=1, retainHandling=0), got=a.collect())

a.subscribe(f"req/{RUN}", qos=1)
b.publish(f"req/{RUN}", "ask", qos=1, ResponseTopic=f"resp/{RUN}/1", CorrelationData=b"c-1")
report("request_response", got=a.collect())

s1, s2 = Client("paho-s1"), Client("paho-s2")
s1.subscribe(f"$share/g/sh/{RUN}/#", qos=1)
s2.subscribe(f"$share/g/sh/{RUN}/#", qos=1)
for n in range(20):
    b.publish(f"sh/{RUN}/x", f"s{n}", qos=1)
report("shared", first=len(s1.collect()), second=len(s2.collect(0.1)))

for client in (a, b, s1, s2):
    client.close()
