#!/usr/bin/env python3
"""paho-mqtt 2.x peer of crates/broker/tests/tls_interop.rs.

Connects over TLS (optionally with a client certificate), subscribes to a topic, publishes to it
and waits for its own message. Prints `OK <payload>` and exits 0; prints `REFUSED <why>` and
exits 2 when the TLS handshake or the CONNECT fails, `TIMEOUT` and exits 3 when nothing arrives.

usage: paho_tls.py --port P --host H --cafile CA [--cert C --key K] [--topic T] [--protocol 4|5]
"""
import argparse
import ssl
import sys
import threading

import paho.mqtt.client as mqtt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--topic", default="paho/tls")
    ap.add_argument("--protocol", type=int, default=5)
    args = ap.parse_args()

    proto = mqtt.MQTTv5 if args.protocol == 5 else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-tls", protocol=proto)
    c.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key,
              cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    done = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            result["refused"] = f"CONNACK {reason_code}"
            done.set()
            return
        result["connected"] = True
        client.subscribe(args.topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if reason_codes[0].is_failure:
            result["refused"] = f"SUBACK {reason_codes[0]}"
            done.set()
            return
        client.publish(args.topic, b"hello from paho", qos=1)

    def on_message(client, userdata, msg):
        result["payload"] = msg.payload.decode()
        done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        # With TLS 1.3 a refused client certificate shows only after the handshake.
        if "connected" not in result:
            result["refused"] = f"closed before CONNACK ({reason_code})"
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    try:
        c.connect(args.host, args.port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        print(f"REFUSED {e}")
        return 2
    c.loop_start()
    ok = done.wait(5)
    c.loop_stop()
    if "refused" in result:
        print(f"REFUSED {result['refused']}")
        return 2
    if not ok:
        print("TIMEOUT")
        return 3
    print(f"OK {result['payload']}")
    c.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
