#!/usr/bin/env python3
"""Scripted MQTT conversations driven by Eclipse Paho (paho-mqtt 2.x), a client nobody at Tern wrote.

Each scenario asserts what the specification requires and records what every client received as a
normalised transcript. Run against Tern and against a real Mosquitto, the transcripts are compared
(crates/cli/tests/interop_paho.rs): a difference is either a Tern bug or a deliberate, documented
divergence.

Usage: paho_scenarios.py --port N [--host H] [--only NAME ...] [--list]
Prints one JSON object {scenario: transcript} on stdout; exit status 1 if any scenario failed.
"""
import argparse
import json
import queue
import socket
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 5.0
QUIET = 0.4  # how long "nothing more arrives" is waited for


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Client:
    """A paho client with synchronous connect/subscribe/publish and a queue of received messages."""

    def __init__(self, host, port, client_id, version=5, clean=True, will=None, session_expiry=None,
                 keepalive=60):
        self.version = version
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        kwargs = {}
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
        self.messages = queue.Queue()
        self.events = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.events.put(("connack", f.session_present, rc.value, p))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("suback", mid, [r.value for r in rcs]))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self.events.put(("unsuback", mid, [r.value for r in rcs]))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.events.put(("disconnect", rc.value))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        if will:
            topic, payload, qos, retain = will[:4]
            props = will[4] if len(will) > 4 else None
            self.c.will_set(topic, payload, qos, retain, properties=props)
        self.host, self.port, self.clean, self.keepalive = host, port, clean, keepalive
        self.session_expiry = session_expiry

    def connect(self):
        props = None
        kwargs = {}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
        self.c.connect(self.host, self.port, self.keepalive, properties=props, **kwargs)
        self.c.loop_start()
        ev = self.wait_event("connack")
        check(ev[2] == 0, f"connect refused: {ev[2]}")
        return ev

    def wait_event(self, kind):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if ev[0] == kind:
                return ev
        raise Failure(f"no {kind} within {TIMEOUT}s")

    def subscribe(self, topic, qos=0, options=None, props=None):
        if self.version == 5:
            opts = options or SubscribeOptions(qos=qos)
            self.c.subscribe(topic, options=opts, properties=props)
        else:
            self.c.subscribe(topic, qos)
        return self.wait_event("suback")[2]

    def unsubscribe(self, topic):
        self.c.unsubscribe(topic)
        return self.wait_event("unsuback")[2]

    def publish(self, topic, payload, qos=0, retain=False, props=None):
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        info.wait_for_publish(TIMEOUT)
        check(info.is_published(), f"publish to {topic} not acknowledged")

    def receive(self, n):
        out = []
        deadline = time.time() + TIMEOUT
        while len(out) < n and time.time() < deadline:
            try:
                out.append(self.messages.get(timeout=max(0.01, deadline - time.time())))
            except queue.Empty:
                break
        return out

    def receive_quiet(self):
        """Everything that arrives until nothing more does for QUIET seconds."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=QUIET))
            except queue.Empty:
                return out

    def disconnect(self, props=None):
        self.c.disconnect(properties=props)
        self.c.loop_stop()

    def kill(self):
        """Drop the TCP connection without DISCONNECT: an abnormal disconnect for the broker."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def msg_record(m, with_props=False):
    rec = {"topic": m.topic, "payload": m.payload.decode("utf-8", "replace"), "qos": m.qos, "retain": bool(m.retain)}
    if with_props and m.properties is not None:
        p = m.properties
        for name in ("ContentType", "ResponseTopic", "PayloadFormatIndicator", "UserProperty"):
            if hasattr(p, name):
                v = getattr(p, name)
                rec[name] = [list(x) for x in v] if name == "UserProperty" else v
        if hasattr(p, "CorrelationData"):
            rec["CorrelationData"] = p.CorrelationData.decode("utf-8", "replace")
        if hasattr(p, "SubscriptionIdentifier"):
            rec["SubscriptionIdentifier"] = sorted(p.SubscriptionIdentifier)
        if hasattr(p, "MessageExpiryInterval"):
            rec["MessageExpiryInterval<=60"] = p.MessageExpiryInterval <= 60
    return rec


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def qos_levels_v311(ctx):
    """Every publish QoS × subscription QoS: delivered at the minimum of the two [MQTT-3.8.4-6]."""
    out = {}
    for sub_q in (0, 1, 2):
        sub = ctx.client("s", version=4)
        sub.connect()
        t = ctx.topic(f"q/{sub_q}")
        check(sub.subscribe(t, sub_q) == [sub_q], "granted QoS")
        pub = ctx.client("p", version=4)
        pub.connect()
        for pub_q in (0, 1, 2):
            pub.publish(t, f"m{pub_q}", pub_q)
        got = sorted((m.payload.decode(), m.qos) for m in sub.receive(3))
        check(got == [(f"m{q}", min(q, sub_q)) for q in (0, 1, 2)], f"sub qos {sub_q}: {got}")
        out[f"sub{sub_q}"] = got
        pub.disconnect()
        sub.disconnect()
    return out


@scenario
def qos_levels_v5(ctx):
    out = {}
    for sub_q in (0, 1, 2):
        sub = ctx.client("s")
        sub.connect()
        t = ctx.topic(f"q/{sub_q}")
        check(sub.subscribe(t, sub_q) == [sub_q], "granted QoS")
        pub = ctx.client("p")
        pub.connect()
        for pub_q in (0, 1, 2):
            pub.publish(t, f"m{pub_q}", pub_q)
        got = sorted((m.payload.decode(), m.qos) for m in sub.receive(3))
        check(got == [(f"m{q}", min(q, sub_q)) for q in (0, 1, 2)], f"sub qos {sub_q}: {got}")
        out[f"sub{sub_q}"] = got
        pub.disconnect()
        sub.disconnect()
    return out


@scenario
def ordering_qos1(ctx):
    """Messages from one publisher on one topic arrive in order [MQTT-4.6.0-5]."""
    sub = ctx.client("s")
    sub.connect()
    t = ctx.topic("order")
    sub.subscribe(t, 1)
    pub = ctx.client("p")
    pub.connect()
    for i in range(200):
        pub.c.publish(t, str(i), 1)
    got = [int(m.payload) for m in sub.receive(200)]
    check(got == list(range(200)), f"order: {got[:20]}...")
    pub.disconnect()
    sub.disconnect()
    return {"count": len(got)}


@scenario
def retained_messages(ctx):
    """Retained: stored, replaced, delivered on subscribe with RETAIN set, deleted by empty payload."""
    base = ctx.topic("ret")
    pub = ctx.client("p")
    pub.connect()
    pub.publish(f"{base}/a", "first", 1, retain=True)
    pub.publish(f"{base}/a", "second", 1, retain=True)
    pub.publish(f"{base}/b", "bee", 0, retain=True)
    sub = ctx.client("s")
    sub.connect()
    sub.subscribe(f"{base}/+", 1)
    got = sorted((m.topic[len(base):], m.payload.decode(), m.retain, m.qos) for m in sub.receive_quiet())
    check(got == [("/a", "second", True, 1), ("/b", "bee", True, 0)], f"retained on subscribe: {got}")
    # a live message matching is delivered with RETAIN 0 [MQTT-3.3.1-9]
    pub.publish(f"{base}/a", "live", 1, retain=True)
    live = [(m.payload.decode(), m.retain) for m in sub.receive(1)]
    check(live == [("live", False)], f"live retained message: {live}")
    pub.publish(f"{base}/a", "", 1, retain=True)
    pub.publish(f"{base}/b", "", 1, retain=True)
    sub.receive_quiet()
    sub2 = ctx.client("s2")
    sub2.connect()
    sub2.subscribe(f"{base}/#", 1)
    after = sub2.receive_quiet()
    check(after == [], f"retained after delete: {[m.payload for m in after]}")
    for c in (pub, sub, sub2):
        c.disconnect()
    return {"on_subscribe": got, "live": live, "after_delete": len(after)}


@scenario
def retain_handling_v5(ctx):
    """v5 Retain Handling 0/1/2 and Retain As Published [MQTT-3.3.1-10..13]."""
    t = ctx.topic("rh")
    pub = ctx.client("p")
    pub.connect()
    pub.publish(t, "kept", 1, retain=True)
    out = {}
    for rh in (0, 1, 2):
        sub = ctx.client(f"s{rh}")
        sub.connect()
        sub.subscribe(t, options=SubscribeOptions(qos=1, retainHandling=rh))
        first = len(sub.receive_quiet())
        sub.subscribe(t, options=SubscribeOptions(qos=1, retainHandling=rh))
        second = len(sub.receive_quiet())
        out[f"rh{rh}"] = [first, second]
        sub.disconnect()
    check(out == {"rh0": [1, 1], "rh1": [1, 0], "rh2": [0, 0]}, f"retain handling: {out}")
    rap = ctx.client("rap")
    rap.connect()
    rap.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2))
    pub.publish(t, "again", 1, retain=True)
    got = [(m.payload.decode(), m.retain) for m in rap.receive(1)]
    check(got == [("again", True)], f"retain as published: {got}")
    pub.publish(t, "", 1, retain=True)
    rap.disconnect()
    pub.disconnect()
    out["retain_as_published"] = got
    return out


@scenario
def will_on_abnormal_disconnect(ctx):
    """The will is published when the connection drops without DISCONNECT [MQTT-3.1.2-8]."""
    t = ctx.topic("will")
    sub = ctx.client("s")
    sub.connect()
    sub.subscribe(t, 1)
    w = ctx.client("w", will=(t, "gone", 1, False))
    w.connect()
    w.kill()
    got = [(m.payload.decode(), m.qos) for m in sub.receive(1)]
    check(got == [("gone", 1)], f"will: {got}")
    sub.disconnect()
    return {"will": got}


@scenario
def no_will_after_normal_disconnect(ctx):
    """No will after a normal DISCONNECT [MQTT-3.14.4-3]; v5 DISCONNECT 0x04 sends it."""
    t = ctx.topic("nowill")
    sub = ctx.client("s")
    sub.connect()
    sub.subscribe(t, 1)
    w = ctx.client("w", will=(t, "gone", 1, False))
    w.connect()
    w.disconnect()
    none = sub.receive_quiet()
    check(none == [], "will after normal disconnect")
    w2 = ctx.client("w2", will=(t, "with-will", 1, False))
    w2.connect()
    w2.c.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    got = [m.payload.decode() for m in sub.receive(1)]
    w2.c.loop_stop()
    check(got == ["with-will"], f"DISCONNECT 0x04: {got}")
    sub.disconnect()
    return {"normal": 0, "with_will": got}


@scenario
def will_delay_v5(ctx):
    """v5 Will Delay Interval: a will with a delay longer than the session is sent when the session ends."""
    t = ctx.topic("willdelay")
    sub = ctx.client("s")
    sub.connect()
    sub.subscribe(t, 1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    w = ctx.client("w", will=(t, "late", 1, False, wp), session_expiry=10)
    w.connect()
    w.kill()
    early = sub.receive_quiet()
    check(early == [], "will sent before its delay")
    got = [m.payload.decode() for m in sub.receive(1)]
    check(got == ["late"], f"delayed will: {got}")
    sub.disconnect()
    return {"delayed": got}


@scenario
def persistent_session_v311(ctx):
    """clean session 0: subscriptions and QoS 1/2 messages kept while offline [MQTT-3.1.2-4]."""
    t = ctx.topic("persist")
    cid = ctx.cid("persist")
    sub = Client(ctx.host, ctx.port, cid, version=4, clean=False)
    first = sub.connect()
    sub.subscribe(t, 2)
    sub.disconnect()
    pub = ctx.client("p", version=4)
    pub.connect()
    for i in range(5):
        pub.publish(t, f"q1-{i}", 1)
    for i in range(5):
        pub.publish(t, f"q2-{i}", 2)
    pub.publish(t, "q0", 0)
    pub.disconnect()
    sub = Client(ctx.host, ctx.port, cid, version=4, clean=False)
    ev = sub.connect()
    check(ev[1], "session present")
    got = [m.payload.decode() for m in sub.receive_quiet()]
    expected_q12 = [f"q1-{i}" for i in range(5)] + [f"q2-{i}" for i in range(5)]
    check(got[:10] == expected_q12, f"queued messages: {got}")
    sub.disconnect()
    clean = Client(ctx.host, ctx.port, cid, version=4, clean=True)
    ev2 = clean.connect()
    check(not ev2[1], "clean session must not be present")
    clean.disconnect()
    # QoS 0 messages for offline clients may or may not be queued [MQTT-3.1.2-5]; Tern and
    # Mosquitto (queue_qos0_messages false) both drop them.
    return {"first_present": first[1], "queued": got}


@scenario
def session_expiry_v5(ctx):
    """v5 session expiry: a session with expiry survives a disconnect; expiry 0 does not."""
    t = ctx.topic("expiry")
    cid = ctx.cid("exp")
    sub = Client(ctx.host, ctx.port, cid, clean=True, session_expiry=30)
    sub.connect()
    sub.subscribe(t, 1)
    sub.disconnect()
    pub = ctx.client("p")
    pub.connect()
    pub.publish(t, "while-away", 1)
    sub = Client(ctx.host, ctx.port, cid, clean=False, session_expiry=0)
    ev = sub.connect()
    check(ev[1], "session present after reconnect within expiry")
    got = [m.payload.decode() for m in sub.receive(1)]
    check(got == ["while-away"], f"queued: {got}")
    sub.disconnect()  # expiry now 0: the session ends
    pub.publish(t, "after-end", 1)
    sub = Client(ctx.host, ctx.port, cid, clean=False, session_expiry=0)
    ev = sub.connect()
    check(not ev[1], "session must have ended with expiry 0")
    none = sub.receive_quiet()
    check(none == [], "messages after session end")
    sub.disconnect()
    pub.disconnect()
    return {"queued": got}


@scenario
def shared_subscription(ctx):
    """$share/group/filter: each message to exactly one member, both members get some."""
    t = ctx.topic("shared")
    group = f"$share/g{ctx.nonce}/{t}"
    a = ctx.client("a")
    b = ctx.client("b")
    for c in (a, b):
        c.connect()
        c.subscribe(group, 1)
    pub = ctx.client("p")
    pub.connect()
    for i in range(20):
        pub.publish(t, str(i), 1)
    ga = [int(m.payload) for m in a.receive_quiet()]
    gb = [int(m.payload) for m in b.receive_quiet()]
    check(sorted(ga + gb) == list(range(20)), f"shared: {ga} {gb}")
    check(len(ga) > 0 and len(gb) > 0, f"not balanced: {len(ga)} / {len(gb)}")
    for c in (a, b, pub):
        c.disconnect()
    return {"total": len(ga) + len(gb), "both_members_used": True}


@scenario
def shared_subscription_v311(ctx):
    t = ctx.topic("shared311")
    group = f"$share/g{ctx.nonce}/{t}"
    a = ctx.client("a", version=4)
    b = ctx.client("b", version=4)
    for c in (a, b):
        c.connect()
        c.subscribe(group, 1)
    pub = ctx.client("p", version=4)
    pub.connect()
    for i in range(10):
        pub.publish(t, str(i), 1)
    got = sorted(int(m.payload) for m in a.receive_quiet() + b.receive_quiet())
    check(got == list(range(10)), f"shared 3.1.1: {got}")
    for c in (a, b, pub):
        c.disconnect()
    return {"total": len(got)}


@scenario
def v5_properties_passed_through(ctx):
    """Payload format, content type, response topic, correlation data, user properties, expiry."""
    t = ctx.topic("props")
    sub = ctx.client("s")
    sub.connect()
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 42
    sub.subscribe(t, 1, props=sp)
    pub = ctx.client("p")
    pub.connect()
    pp = Properties(PacketTypes.PUBLISH)
    pp.PayloadFormatIndicator = 1
    pp.ContentType = "text/plain"
    pp.ResponseTopic = t + "/reply"
    pp.CorrelationData = b"corr-1"
    pp.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
    pp.MessageExpiryInterval = 60
    pub.publish(t, "hello", 1, props=pp)
    got = [msg_record(m, True) for m in sub.receive(1)]
    check(len(got) == 1, "message with properties not received")
    r = got[0]
    check(r.get("ContentType") == "text/plain", f"content type: {r}")
    check(r.get("ResponseTopic") == t + "/reply", f"response topic: {r}")
    check(r.get("CorrelationData") == "corr-1", f"correlation data: {r}")
    check(r.get("UserProperty") == [["a", "1"], ["b", "2"], ["a", "3"]], f"user properties in order: {r}")
    check(r.get("PayloadFormatIndicator") == 1, f"payload format: {r}")
    check(r.get("SubscriptionIdentifier") == [42], f"subscription identifier: {r}")
    check(r.get("MessageExpiryInterval<=60") is True, f"message expiry: {r}")
    sub.disconnect()
    pub.disconnect()
    r["topic"] = "<topic>"
    r["ResponseTopic"] = "<topic>/reply"
    return {"received": got}


@scenario
def no_local_v5(ctx):
    """No Local: a client does not receive its own publications [MQTT-3.8.3-3]."""
    t = ctx.topic("nolocal")
    c = ctx.client("c")
    c.connect()
    c.subscribe(t, options=SubscribeOptions(qos=1, noLocal=True))
    c.publish(t, "mine", 1)
    none = c.receive_quiet()
    other = ctx.client("o")
    other.connect()
    other.publish(t, "theirs", 1)
    got = [m.payload.decode() for m in c.receive(1)]
    check(none == [] and got == ["theirs"], f"no local: {len(none)} {got}")
    c.disconnect()
    other.disconnect()
    return {"own": 0, "other": got}


@scenario
def dollar_topics_not_matched_by_wildcards(ctx):
    """A leading # or + does not match topics starting with $ [MQTT-4.7.2-1]."""
    c = ctx.client("c")
    c.connect()
    c.subscribe("#", 0)
    c.subscribe("+/tern-dollar-test", 0)
    pub = ctx.client("p")
    pub.connect()
    pub.publish("$tern-test/tern-dollar-test", "dollar", 1)
    got = [m for m in c.receive_quiet() if m.topic.startswith("$tern-test")]
    check(got == [], "$ topic matched a leading wildcard")
    c.disconnect()
    pub.disconnect()
    return {"matched": 0}


@scenario
def unsubscribe_reason_codes_v5(ctx):
    t = ctx.topic("unsub")
    c = ctx.client("c")
    c.connect()
    c.subscribe(t, 1)
    rcs = [c.unsubscribe(t), c.unsubscribe(t)]
    check(rcs == [[0], [17]], f"unsuback reason codes: {rcs}")
    c.disconnect()
    return {"reason_codes": rcs}


@scenario
def wildcard_matching(ctx):
    base = ctx.topic("wild")
    c = ctx.client("c")
    c.connect()
    c.subscribe(f"{base}/+/x", 1)
    c.subscribe(f"{base}/deep/#", 1)
    pub = ctx.client("p")
    pub.connect()
    for suffix in ("a/x", "a/y", "b/x", "deep", "deep/1/2/3", "a/x/z"):
        pub.publish(f"{base}/{suffix}", suffix, 1)
    got = sorted(m.payload.decode() for m in c.receive_quiet())
    check(got == ["a/x", "b/x", "deep", "deep/1/2/3"], f"wildcards: {got}")
    c.disconnect()
    pub.disconnect()
    return {"matched": got}


class Ctx:
    def __init__(self, host, port, name):
        self.host, self.port = host, port
        self.nonce = uuid.uuid4().hex[:8]
        self.name = name
        self.clients = []

    def topic(self, suffix):
        return f"interop/{self.name}/{self.nonce}/{suffix}"

    def cid(self, suffix):
        return f"paho-{self.name[:10]}-{suffix}-{self.nonce}"

    def client(self, suffix, **kw):
        c = Client(self.host, self.port, self.cid(suffix), **kw)
        self.clients.append(c)
        return c

    def close(self):
        for c in self.clients:
            try:
                c.c.loop_stop()
                c.c.disconnect()
            except Exception:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    results, failed = {}, []
    for name, fn in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        ctx = Ctx(args.host, args.port, name)
        try:
            results[name] = {"ok": True, "transcript": fn(ctx)}
        except Exception as e:  # a failed check or a paho error: report, go on with the others
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        finally:
            ctx.close()
    print(json.dumps(results, indent=1, sort_keys=True))
    if failed:
        print(f"FAILED: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
