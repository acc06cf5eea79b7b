#!/usr/bin/python3
"""paho_interop.py BIN: MQTT 3.1.1 and 5 behaviour of `BIN server` checked
with Eclipse Paho's Python client (Debian's python3-paho-mqtt, 1.6).

Starts one server on free loopback ports with a throwaway data dir and runs
each check against it: the client behaviour an MQTT user relies on (QoS
round trips, retained messages, offline queues, wills, keepalive,
overlapping subscriptions, $-topics, zero-length client ids) and MQTT 5's
additions (session expiry, will delay, subscription options, shared
subscriptions, properties, message expiry, topic aliases, maximum packet
size, assigned client ids, reason codes). Each check prints PASS or FAIL;
the last line is "N passed, M failed"; the exit status is non-zero if
anything failed. Every wait is bounded.

Where the spec lets a broker choose (QoS 0 in an offline queue, one or two
copies for overlapping subscriptions) either answer passes; the checks say
which.
"""

import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 5.0  # seconds any one step may take
HOST = "127.0.0.1"
PORT = 0  # set by main
HTTP_PORT = 0  # the HTTP listener (WebSocket at /mqtt), set by main
seq = [0]


def uid(name):
    seq[0] += 1
    return "interop-%s-%d-%d" % (name, os.getpid(), seq[0])


class Check(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Check(what)


class Client:
    """A paho client with its messages on a queue and its acks awaited."""

    def __init__(self, cid, v5=False, clean=True, props=None, will=None, keepalive=60):
        self.v5 = v5
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        if v5:
            self.c = mqtt.Client(client_id=cid, protocol=proto)
        else:
            self.c = mqtt.Client(client_id=cid, clean_session=clean, protocol=proto)
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        if v5:
            self.c.on_connect = lambda c, u, f, rc, p=None: self.connack.put((f, rc, p))
            self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.subacks.put(rcs)
            self.c.on_unsubscribe = lambda c, u, mid, p=None, rcs=None: self.unsubacks.put(rcs)
            self.c.on_disconnect = lambda c, u, rc, p=None: self.disconnects.put(rc)
        else:
            self.c.on_connect = lambda c, u, f, rc: self.connack.put((f, rc, None))
            self.c.on_subscribe = lambda c, u, mid, rcs: self.subacks.put(rcs)
            self.c.on_unsubscribe = lambda c, u, mid: self.unsubacks.put(None)
            self.c.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        if will:
            self.c.will_set(*will)
        if v5:
            self.c.connect(HOST, PORT, keepalive, clean_start=clean, properties=props)
        else:
            self.c.connect(HOST, PORT, keepalive)
        self.c.loop_start()
        try:
            self.flags, self.rc, self.props = self.connack.get(timeout=WAIT)
        except queue.Empty:
            self.stop()
            raise Check("no CONNACK for %s" % cid)

    def sub(self, topic, qos=0, props=None, options=None):
        if self.v5:
            self.c.subscribe(topic, options=options or SubscribeOptions(qos=qos), properties=props)
        else:
            self.c.subscribe(topic, qos)
        try:
            return self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise Check("no SUBACK for %s" % topic)

    def unsub(self, topic):
        self.c.unsubscribe(topic)
        try:
            return self.unsubacks.get(timeout=WAIT)
        except queue.Empty:
            raise Check("no UNSUBACK for %s" % topic)

    def pub(self, topic, payload, qos=0, retain=False, props=None):
        info = self.c.publish(topic, payload, qos, retain, properties=props) if self.v5 else \
            self.c.publish(topic, payload, qos, retain)
        if qos > 0:
            info.wait_for_publish(timeout=WAIT)
            expect(info.is_published(), "publish to %s (QoS %d) not acknowledged" % (topic, qos))

    def got(self, n, wait=WAIT):
        """n messages, or fewer if they do not come within wait."""
        out, end = [], time.time() + wait
        while len(out) < n:
            try:
                out.append(self.msgs.get(timeout=max(end - time.time(), 0.01)))
            except queue.Empty:
                break
        return out

    def quiet(self, wait=0.5):
        """Messages that arrive within wait (expected: none)."""
        return self.got(1 << 30, wait)

    def stop(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


# -- raw MQTT, for what paho does not let a test do (die without DISCONNECT,
# stop pinging) --------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(b, i):
    """The variable byte integer at b[i:] (MQTT's, also the native
    protocol's length prefix): (value, index after it). IndexError if it is
    cut."""
    n, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def closes(s, wait=WAIT):
    """True if the broker closes s within wait (what it sends first is read
    and dropped)."""
    s.settimeout(wait)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def raw_connect(cid, keepalive=60, will=None, v5=False, props=b"", will_props=b"", clean=True):
    """Connects a raw socket; will = (topic, payload, qos, retain). Returns it
    after its CONNACK."""
    flags = 0x02 if clean else 0
    payload = mstr(cid)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if v5:
            payload += varint(len(will_props)) + will_props
        payload += mstr(topic) + mstr(msg)
    var = mstr("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack(">H", keepalive)
    if v5:
        var += varint(len(props)) + props
    body = var + payload
    s = socket.create_connection((HOST, PORT), timeout=WAIT)
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    head = s.recv(2)
    expect(len(head) == 2 and head[0] == 0x20, "raw CONNECT of %s: no CONNACK (%r)" % (cid, head))
    rest = b""
    while len(rest) < head[1]:
        chunk = s.recv(head[1] - len(rest))
        expect(chunk, "raw CONNECT of %s: short CONNACK" % cid)
        rest += chunk
    rc = rest[1]
    expect(rc == 0, "raw CONNECT of %s: CONNACK code %d" % (cid, rc))
    return s


def prop_u32(ident, v):
    return bytes([ident]) + struct.pack(">I", v)


# -- MQTT 3.1.1 --------------------------------------------------------------

def v3_basic():
    c = Client(uid("basic"))
    t = uid("basic/t")
    c.sub(t, 2)
    for q in (0, 1, 2):
        c.pub(t, "qos %d" % q, q)
    got = c.got(3)
    c.stop()
    expect(len(got) == 3, "3 published, %d received" % len(got))
    expect(sorted(m.payload for m in got) == [b"qos 0", b"qos 1", b"qos 2"], "payloads %r" % [m.payload for m in got])
    expect(sorted(m.qos for m in got) == [0, 1, 2], "granted QoS %r" % [m.qos for m in got])


def v3_retained():
    root = uid("retained")
    c = Client(uid("ret-pub"))
    for q in (0, 1, 2):
        c.pub("%s/q%d" % (root, q), "r%d" % q, q, retain=True)
    c.stop()
    s = Client(uid("ret-sub"))
    s.sub(root + "/#", 2)
    got = s.got(3)
    expect(len(got) == 3, "3 retained, %d received" % len(got))
    expect(all(m.retain for m in got), "retained messages without the retain flag")
    s.stop()
    c = Client(uid("ret-clear"))
    for q in (0, 1, 2):
        c.pub("%s/q%d" % (root, q), "", q, retain=True)
    c.stop()
    s = Client(uid("ret-sub2"))
    s.sub(root + "/#", 2)
    late = s.quiet(1.0)
    s.stop()
    expect(not late, "cleared retained messages still delivered: %r" % [m.topic for m in late])


def v3_offline_queue():
    cid, t = uid("offline"), uid("offline/t")
    s = Client(cid, clean=False)
    s.sub(t + "/#", 2)
    s.stop()
    p = Client(uid("offline-pub"))
    for q in (0, 1, 2):
        p.pub("%s/q%d" % (t, q), "m%d" % q, q)
    p.stop()
    s = Client(cid, clean=False)
    expect(s.flags.get("session present") == 1, "session present flag not set on reconnect")
    got = s.got(3, 2.0)
    s.stop()
    Client(cid, clean=True).stop()  # let the session go
    payloads = sorted(m.payload for m in got)
    # QoS 0 may or may not be queued [MQTT-3.1.2-5]; QoS 1 and 2 must be.
    expect(payloads in ([b"m1", b"m2"], [b"m0", b"m1", b"m2"]), "queued while offline: %r" % payloads)


def v3_will():
    t = uid("will/t")
    s = Client(uid("will-sub"))
    s.sub(t, 1)
    w = raw_connect(uid("will-dies"), will=(t, "gone", 1, False))
    w.close()  # no DISCONNECT: the will is published
    got = s.got(1)
    expect(got and got[0].payload == b"gone", "no will after the connection dropped")
    # A DISCONNECT drops the will.
    w = Client(uid("will-polite"), will=(t, "should not", 1, False))
    w.stop()
    late = s.quiet(1.0)
    s.stop()
    expect(not late, "will published after a DISCONNECT")


def v3_keepalive():
    t = uid("keepalive/t")
    s = Client(uid("ka-sub"))
    s.sub(t, 1)
    start = time.time()
    w = raw_connect(uid("ka-silent"), keepalive=2, will=(t, "timed out", 1, False))
    got = s.got(1, 6.0)  # closed after 1.5 x keepalive [MQTT-3.1.2-24]
    took = time.time() - start
    # The broker closes the silent connection.
    closed = closes(w)
    w.close()
    s.stop()
    expect(got and got[0].payload == b"timed out", "no will for a client silent past its keepalive")
    expect(took >= 2.0, "will after %.1f s, before the keepalive had passed" % took)
    expect(closed, "silent connection not closed")


def v3_overlapping():
    root = uid("overlap")
    c = Client(uid("overlap"))
    c.sub(root + "/#", 2)
    c.sub(root + "/+", 1)
    c.pub(root + "/a", "o", 2)
    got = c.got(2, 1.5)
    c.stop()
    qos = sorted(m.qos for m in got)
    # One copy at the highest QoS, or one per subscription [MQTT-3.3.5-1].
    expect(qos in ([2], [1, 2]), "overlapping subscriptions delivered QoS %r" % qos)


def v3_dollar_topics():
    root = uid("dollar")
    c = Client(uid("dollar"))
    c.sub("#", 0)
    c.pub(root + "/x", "plain", 0)
    got = []
    end = time.time() + 3
    while time.time() < end:
        ms = c.got(1, 0.5)
        got += ms
        if any(m.topic == root + "/x" for m in ms):
            break
    dollar = [m.topic for m in got if m.topic.startswith("$")]
    c.stop()
    expect(any(m.topic == root + "/x" for m in got), "# missed a plain topic")
    expect(not dollar, "# matched $ topics: %r" % dollar[:3])


def v3_unsubscribe():
    root = uid("unsub")
    c = Client(uid("unsub"))
    for t in ("a", "b", "c"):
        c.sub("%s/%s" % (root, t), 1)
    c.unsub(root + "/a")
    c.unsub(root + "/c")
    for t in ("a", "b", "c"):
        c.pub("%s/%s" % (root, t), t, 1)
    got = c.got(3, 1.5)
    c.stop()
    expect([m.payload for m in got] == [b"b"], "after unsubscribing two of three: %r" % [m.payload for m in got])


def v3_zero_length_id():
    c = Client("")  # clean session: the server assigns one
    expect(c.rc == 0, "empty client id with clean session refused: %d" % c.rc)
    c.stop()
    # Without clean session, CONNACK 0x02 [MQTT-3.1.3-8].
    body = mstr("MQTT") + bytes([4, 0]) + struct.pack(">H", 60) + mstr("")
    s = socket.create_connection((HOST, PORT), timeout=WAIT)
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    ack = s.recv(4)
    s.close()
    expect(ack[:2] == b"\x20\x02" and len(ack) == 4 and ack[3] == 2,
           "empty client id without clean session: CONNACK %r, want return code 2" % ack)


def v3_order():
    t = uid("order/t")
    c = Client(uid("order"))
    c.sub(t, 1)
    n = 200
    for i in range(n):
        c.c.publish(t, str(i), 1)
    got = c.got(n)
    c.stop()
    expect([int(m.payload) for m in got] == list(range(n)), "QoS 1 out of order or lost: %d of %d" % (len(got), n))


# -- MQTT 5 ------------------------------------------------------------------

def props(kind, **kw):
    p = Properties(kind)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def v5_session_expiry():
    cid, t = uid("v5-expiry"), uid("v5expiry/t")
    c = Client(cid, v5=True, clean=True, props=props(PacketTypes.CONNECT, SessionExpiryInterval=1))
    c.sub(t, 1)
    c.stop()
    p = Client(uid("v5-expiry-pub"), v5=True)
    p.pub(t, "queued", 1)
    p.stop()
    time.sleep(2.5)  # past the 1 s expiry
    c = Client(cid, v5=True, clean=False, props=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    present = c.flags.get("session present")
    late = c.quiet(1.0)
    c.stop()
    expect(present == 0, "session present after it expired")
    expect(not late, "message of an expired session delivered")
    # Within the interval, it is kept with its queue.
    cid = uid("v5-kept")
    c = Client(cid, v5=True, props=props(PacketTypes.CONNECT, SessionExpiryInterval=30))
    c.sub(t + "k", 1)
    c.stop()
    p = Client(uid("v5-kept-pub"), v5=True)
    p.pub(t + "k", "kept", 1)
    p.stop()
    c = Client(cid, v5=True, clean=False, props=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    present = c.flags.get("session present")
    got = c.got(1)
    c.stop()
    expect(present == 1, "session not present within its expiry")
    expect(got and got[0].payload == b"kept", "queued message of a live session not delivered")


def v5_will_delay():
    t = uid("v5will/t")
    s = Client(uid("v5-will-sub"), v5=True)
    s.sub(t, 1)
    cp = prop_u32(0x11, 10)  # session expiry 10 s
    wp = prop_u32(0x18, 2)   # will delay 2 s
    w = raw_connect(uid("v5-will"), v5=True, props=cp, will=(t, "delayed", 1, False), will_props=wp)
    start = time.time()
    w.close()
    got = s.got(1, 6.0)
    took = time.time() - start
    expect(got and got[0].payload == b"delayed", "delayed will never published")
    expect(took >= 1.5, "will published after %.2f s, before its 2 s delay" % took)
    # Reconnecting within the delay cancels it [MQTT-3.1.3-9].
    cid = uid("v5-will-back")
    w = raw_connect(cid, v5=True, props=cp, will=(t, "cancelled", 1, False), will_props=wp)
    w.close()
    time.sleep(0.3)
    back = Client(cid, v5=True, clean=False, props=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    late = s.quiet(3.0)
    back.stop()
    s.stop()
    expect(not late, "will published though the client came back within the delay: %r" % [m.payload for m in late])


def v5_no_local_and_retain_options():
    t = uid("v5opts/t")
    c = Client(uid("v5-nolocal"), v5=True)
    c.sub(t, options=SubscribeOptions(qos=1, noLocal=True))
    c.pub(t, "mine", 1)
    own = c.quiet(1.0)
    c.stop()
    expect(not own, "noLocal subscriber got its own message")
    r = Client(uid("v5-ret-pub"), v5=True)
    r.pub(t + "/r", "kept", 1, retain=True)
    r.stop()
    a = Client(uid("v5-rap"), v5=True)
    a.sub(t + "/r", options=SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
    none = a.quiet(1.0)
    a.sub(t + "/#", options=SubscribeOptions(qos=1, retainAsPublished=True))
    got = a.got(1)
    a.stop()
    r = Client(uid("v5-ret-clear"), v5=True)
    r.pub(t + "/r", "", 1, retain=True)
    r.stop()
    expect(not none, "retain handling 2 sent a retained message")
    expect(got and got[0].retain, "retained message on a new subscription without the retain flag")


def shared_delivery(members, pub, t, n, wait):
    """Sends n QoS 1 messages on t from pub to members, already subscribed
    to one shared group of t; checks that each came to the group once and
    returns what each member got. Stops every client."""
    for i in range(n):
        pub.pub(t, str(i), 1)
    pub.stop()
    got = [m.got(n, wait) for m in members]
    for m in members:
        m.stop()
    all_ = sorted(int(m.payload) for g in got for m in g)
    expect(all_ == list(range(n)), "shared group delivered %d of %d, each once: %r" % (len(all_), n, all_[:40]))
    return got


def v5_shared():
    t = uid("v5shared/t")
    subs = [Client(uid("v5-share-%d" % i), v5=True) for i in range(2)]
    for s in subs:
        s.sub("$share/grp/" + t, 1)
    got = shared_delivery(subs, Client(uid("v5-share-pub"), v5=True), t, 20, 1.5)
    expect(all(len(g) > 0 for g in got), "one member of the shared group got nothing: %r" % [len(g) for g in got])


def v5_properties():
    t = uid("v5props/t")
    s = Client(uid("v5-props-sub"), v5=True)
    s.sub(t, 1)
    p = Client(uid("v5-props-pub"), v5=True)
    pp = props(PacketTypes.PUBLISH, ResponseTopic=t + "/reply", CorrelationData=b"\x01\x02",
               ContentType="text/plain", PayloadFormatIndicator=1)
    pp.UserProperty = ("a", "1")
    pp.UserProperty = ("b", "2")
    pp.UserProperty = ("a", "3")
    p.pub(t, "with props", 1, props=pp)
    p.stop()
    got = s.got(1)
    s.stop()
    expect(got, "message with properties not delivered")
    mp = got[0].properties
    expect(getattr(mp, "ResponseTopic", None) == t + "/reply", "response topic lost")
    expect(getattr(mp, "CorrelationData", None) == b"\x01\x02", "correlation data lost")
    expect(getattr(mp, "ContentType", None) == "text/plain", "content type lost")
    expect(getattr(mp, "PayloadFormatIndicator", None) == 1, "payload format indicator lost")
    expect(getattr(mp, "UserProperty", None) == [("a", "1"), ("b", "2"), ("a", "3")],
           "user properties not kept in order: %r" % getattr(mp, "UserProperty", None))


def v5_message_expiry():
    cid, t = uid("v5-msgexp"), uid("v5msgexp/t")
    c = Client(cid, v5=True, props=props(PacketTypes.CONNECT, SessionExpiryInterval=30))
    c.sub(t, 1)
    c.stop()
    p = Client(uid("v5-msgexp-pub"), v5=True)
    p.pub(t, "short", 1, props=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    p.pub(t, "long", 1, props=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    p.stop()
    time.sleep(2.2)
    c = Client(cid, v5=True, clean=False, props=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    got = c.got(2, 1.5)
    c.stop()
    expect([m.payload for m in got] == [b"long"], "after 2 s offline: %r (want only the 60 s one)" % [m.payload for m in got])
    left = getattr(got[0].properties, "MessageExpiryInterval", None)
    expect(left is not None and left < 60, "expiry interval not counted down: %r" % left)


def v5_topic_alias():
    t = uid("v5alias/t")
    s = Client(uid("v5-alias-sub"), v5=True)
    s.sub(t, 1)
    p = Client(uid("v5-alias-pub"), v5=True)
    amax = getattr(p.props, "TopicAliasMaximum", 0)
    expect(amax > 0, "no topic alias maximum in CONNACK")
    p.pub(t, "first", 1, props=props(PacketTypes.PUBLISH, TopicAlias=1))
    p.pub("", "second", 1, props=props(PacketTypes.PUBLISH, TopicAlias=1))
    p.stop()
    got = s.got(2)
    s.stop()
    expect([(m.topic, m.payload) for m in got] == [(t, b"first"), (t, b"second")],
           "topic alias: %r" % [(m.topic, m.payload) for m in got])


def raw_read(s):
    """One packet from a raw socket: (first byte, body)."""
    head = s.recv(1)
    expect(head, "connection closed, no packet")
    prefix = b""
    while not prefix or prefix[-1] & 0x80:
        b = s.recv(1)
        expect(b, "connection closed inside a packet")
        prefix += b
    n, _ = read_varint(prefix, 0)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        expect(chunk, "connection closed inside a packet")
        body += chunk
    return head[0], body


def v5_alias_out_of_range():
    # Raw: paho 1.6 reports a server's DISCONNECT as a lost connection.
    s = raw_connect(uid("v5-alias-bad"), v5=True)
    pp = bytes([0x23]) + struct.pack(">H", 0xFFFF)  # topic alias 65535
    body = mstr(uid("v5bad/t")) + varint(len(pp)) + pp + b"x"
    s.sendall(bytes([0x30]) + varint(len(body)) + body)
    kind, body = raw_read(s)
    s.close()
    # DISCONNECT 0x94 (topic alias invalid) [MQTT-3.3.2-9].
    expect(kind == 0xE0 and body[:1] == b"\x94", "alias over the maximum: packet 0x%x %r, want DISCONNECT 0x94" % (kind, body))


def v5_maximum_packet_size():
    t = uid("v5max/t")
    s = Client(uid("v5-max-sub"), v5=True, props=props(PacketTypes.CONNECT, MaximumPacketSize=128))
    s.sub(t, 1)
    p = Client(uid("v5-max-pub"), v5=True)
    p.pub(t, "x" * 500, 1)
    p.pub(t, "small", 1)
    p.stop()
    got = s.got(2, 1.5)
    s.stop()
    expect([m.payload for m in got] == [b"small"], "a packet over the subscriber's maximum was sent: %r" % [len(m.payload) for m in got])


def v5_assigned_id():
    c = Client("", v5=True)
    assigned = getattr(c.props, "AssignedClientIdentifier", "")
    c.stop()
    expect(assigned, "no assigned client identifier for an empty one")


def v5_reason_codes():
    # Raw: paho checks filters itself and would not send a bad one.
    s = raw_connect(uid("v5-rc"), v5=True)
    body = struct.pack(">H", 7) + varint(0) + mstr("bad/#/filter") + bytes([1])
    s.sendall(bytes([0x82]) + varint(len(body)) + body)
    kind, body = raw_read(s)
    s.close()
    expect(kind == 0x90 and body[:2] == b"\x00\x07", "no SUBACK for packet id 7: 0x%x %r" % (kind, body))
    expect(body[3:] == b"\x8f", "SUBACK for an invalid filter: %r, want 0x8F" % body[3:])
    c = Client(uid("v5-unsub-none"), v5=True)
    rcs = c.unsub(uid("never/subscribed"))
    c.stop()
    rc = rcs[0] if isinstance(rcs, list) else rcs  # paho 1.6 passes one ReasonCodes
    code = int(getattr(rc, "value", -1))
    expect(code == 0x11, "UNSUBACK for no subscription: 0x%x, want 0x11" % code)


def v5_subscription_identifier():
    t = uid("v5subid/t")
    c = Client(uid("v5-subid"), v5=True)
    c.sub(t, 1, props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42))
    c.pub(t, "id", 1)
    got = c.got(1)
    c.stop()
    ids = getattr(got[0].properties, "SubscriptionIdentifier", None) if got else None
    expect(ids == [42], "subscription identifier %r, want [42]" % ids)


def raw_subscribe(s, topic, qos, pid=1, v5=False, opts=0):
    body = struct.pack(">H", pid) + (varint(0) if v5 else b"") + mstr(topic) + bytes([qos | opts])
    s.sendall(bytes([0x82]) + varint(len(body)) + body)
    kind, body = raw_read(s)
    expect(kind == 0x90, "no SUBACK: packet 0x%x" % kind)
    return body


def raw_publish_packet(kind, body):
    """(topic, packet id or None, payload, flags) of a PUBLISH read raw (3.1.1)."""
    expect(kind >> 4 == 3, "not a PUBLISH: 0x%x" % kind)
    n = struct.unpack(">H", body[:2])[0]
    topic, p = body[2:2 + n].decode(), 2 + n
    pid = None
    if kind & 0x06:
        pid = struct.unpack(">H", body[p:p + 2])[0]
        p += 2
    return topic, pid, body[p:], kind & 0x0F


def v31_connect():
    c = mqtt.Client(client_id=uid("v31"), protocol=mqtt.MQTTv31)
    got = queue.Queue()
    c.on_connect = lambda c, u, f, rc: got.put(rc)
    c.on_message = lambda c, u, m: got.put(m)
    c.connect(HOST, PORT, 60)
    c.loop_start()
    try:
        rc = got.get(timeout=WAIT)
        expect(rc == 0, "MQTT 3.1 CONNECT refused: %d" % rc)
        t = uid("v31/t")
        c.subscribe(t, 1)
        time.sleep(0.3)
        c.publish(t, "old", 1)
        m = got.get(timeout=WAIT)
        expect(m.payload == b"old", "MQTT 3.1 round trip: %r" % m)
    except queue.Empty:
        raise Check("MQTT 3.1 client: nothing within %.0f s" % WAIT)
    finally:
        c.disconnect()
        c.loop_stop()


def v3_redelivery():
    """A QoS 1 and a QoS 2 message left unacknowledged are sent again, with
    DUP set and the same packet ids, when the persistent session returns
    [MQTT-4.4.0-1]."""
    cid, t = uid("redeliver"), uid("redeliver/t")
    s = raw_connect(cid, clean=False)
    raw_subscribe(s, t + "/#", 2)
    p = Client(uid("redeliver-pub"))
    p.pub(t + "/1", "one", 1)
    p.pub(t + "/2", "two", 2)
    p.stop()
    first = [raw_publish_packet(*raw_read(s)) for _ in range(2)]
    s.close()  # neither PUBACK nor PUBREC
    time.sleep(0.3)
    s = raw_connect(cid, clean=False)
    again = [raw_publish_packet(*raw_read(s)) for _ in range(2)]
    # Clean up: a clean connect ends the session.
    s.close()
    raw_connect(cid, clean=True).close()
    expect([(x[0], x[2]) for x in again] == [(x[0], x[2]) for x in first],
           "redelivered %r, first sent %r" % ([(x[0], x[2]) for x in again], [(x[0], x[2]) for x in first]))
    expect([x[1] for x in again] == [x[1] for x in first], "packet ids changed: %r then %r" % ([x[1] for x in first], [x[1] for x in again]))
    expect(all(x[3] & 0x08 for x in again), "redelivered without DUP")


def v3_pubrel_resent():
    """After PUBREC, a returning session gets the PUBREL again, not the
    PUBLISH [MQTT-4.4.0-1]."""
    cid, t = uid("pubrel"), uid("pubrel/t")
    s = raw_connect(cid, clean=False)
    raw_subscribe(s, t, 2)
    p = Client(uid("pubrel-pub"))
    p.pub(t, "exactly once", 2)
    p.stop()
    _, pid, _, _ = raw_publish_packet(*raw_read(s))
    s.sendall(bytes([0x50, 2]) + struct.pack(">H", pid))  # PUBREC
    kind, body = raw_read(s)
    expect(kind == 0x62 and body == struct.pack(">H", pid), "no PUBREL after PUBREC: 0x%x" % kind)
    s.close()  # no PUBCOMP
    time.sleep(0.3)
    s = raw_connect(cid, clean=False)
    kind, body = raw_read(s)
    s.sendall(bytes([0x70, 2]) + body[:2])  # PUBCOMP
    s.settimeout(1.0)
    try:
        more = raw_read(s)
    except (socket.timeout, Check):
        more = None
    s.close()
    raw_connect(cid, clean=True).close()
    expect(kind == 0x62 and body[:2] == struct.pack(">H", pid), "returning session got 0x%x, want PUBREL %d" % (kind, pid))
    expect(more is None, "the message came again after its PUBREL: 0x%x" % (more[0] if more else 0))


def v3_takeover():
    cid = uid("takeover")
    a = Client(cid)
    b = Client(cid)
    try:
        rc = a.disconnects.get(timeout=WAIT)
    except queue.Empty:
        rc = None
    a.c.loop_stop()
    b.stop()
    expect(rc is not None, "first connection not closed when its client id connected again")


def v3_retained_qos_downgrade():
    t = uid("downgrade/t")
    p = Client(uid("downgrade-pub"))
    p.pub(t, "q2", 2, retain=True)
    p.stop()
    s = Client(uid("downgrade-sub"))
    s.sub(t, 1)
    got = s.got(1)
    s.stop()
    c = Client(uid("downgrade-clear"))
    c.pub(t, "", 1, retain=True)
    c.stop()
    expect(got and got[0].qos == 1, "retained QoS 2 to a QoS 1 subscription came at QoS %r" % (got[0].qos if got else None))


def v3_wildcard_publish_refused():
    s = raw_connect(uid("wild-pub"))
    body = mstr("a/+/b") + b"x"
    s.sendall(bytes([0x30]) + varint(len(body)) + body)
    closed = closes(s)
    s.close()
    expect(closed, "a PUBLISH to a topic with wildcards did not close the connection [MQTT-3.3.2-2]")


def v3_second_connect_refused():
    s = raw_connect(uid("twice"))
    body = mstr("MQTT") + bytes([4, 2]) + struct.pack(">H", 60) + mstr(uid("twice"))
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    closed = closes(s)
    s.close()
    expect(closed, "a second CONNECT did not close the connection [MQTT-3.1.0-2]")


def v5_receive_maximum():
    """The broker sends no more QoS 1 messages unacknowledged than the
    client's Receive Maximum [MQTT-3.3.4-9]."""
    cid, t = uid("v5-recvmax"), uid("v5recvmax/t")
    s = raw_connect(cid, v5=True, props=bytes([0x21]) + struct.pack(">H", 2))
    raw_subscribe(s, t, 1, v5=True)
    p = Client(uid("v5-recvmax-pub"), v5=True)
    for i in range(5):
        p.pub(t, str(i), 1)
    p.stop()
    s.settimeout(1.0)
    got = []
    try:
        while True:
            got.append(raw_read(s))
    except (socket.timeout, Check):
        pass
    n = len(got)
    # Acking one lets one more come.
    if got:
        kind, body = got[0]
        n_ = struct.unpack(">H", body[:2])[0]
        pid = body[2 + n_:4 + n_]
        s.sendall(bytes([0x40, 2]) + pid)
    more = []
    try:
        more.append(raw_read(s))
    except (socket.timeout, Check):
        pass
    s.close()
    expect(n == 2, "%d QoS 1 messages in flight with Receive Maximum 2" % n)
    expect(len(more) == 1, "no further message after a PUBACK")


def v5_takeover_reason():
    # Raw: the old connection is told why, DISCONNECT 0x8E [MQTT-3.1.4-3].
    cid = uid("v5-takeover")
    a, _ = raw_v5_connack(cid)
    b = Client(cid, v5=True)
    told = closed_with(a, 0x8E)
    a.close()
    b.stop()
    expect(told, "first connection of a client id not sent DISCONNECT 0x8E (session taken over)")


def v5_shared_no_local_refused():
    s = raw_connect(uid("v5-share-nolocal"), v5=True)
    body = struct.pack(">H", 3) + varint(0) + mstr("$share/g/" + uid("t")) + bytes([1 | 0x04])
    s.sendall(bytes([0x82]) + varint(len(body)) + body)
    s.settimeout(WAIT)
    kind, body = raw_read(s)
    s.close()
    # A protocol error [MQTT-3.8.3-4]: DISCONNECT 0x82 (or a SUBACK refusing it).
    ok = (kind == 0xE0 and body[:1] == b"\x82") or (kind == 0x90 and body[3:4] >= b"\x80")
    expect(ok, "no local on a shared subscription: packet 0x%x %r" % (kind, body))


def v5_server_keepalive():
    # A keepalive over the broker's maximum comes back as Server Keep Alive.
    c = Client(uid("v5-ka"), v5=True, keepalive=65535)
    ska = getattr(c.props, "ServerKeepAlive", None)
    c.stop()
    expect(ska is None or 0 < ska <= 65535, "server keep alive %r" % ska)


def raw_v5_connack(cid, props=b""):
    """A raw MQTT 5 CONNECT; returns (socket, CONNACK properties as bytes)."""
    var = mstr("MQTT") + bytes([5, 0x02]) + struct.pack(">H", 60) + varint(len(props)) + props
    body = var + mstr(cid)
    s = socket.create_connection((HOST, PORT), timeout=WAIT)
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    kind, body = raw_read(s)
    expect(kind == 0x20 and body[1] == 0, "CONNACK 0x%x %r" % (kind, body[:2]))
    return s, body[2:]


def closed_with(s, code):
    """Reads until the broker's DISCONNECT (or EOF); true if it carried code."""
    s.settimeout(WAIT)
    try:
        while True:
            kind, body = raw_read(s)
            if kind == 0xE0:
                return body[:1] == bytes([code])
    except (Check, OSError):
        return False


def v5_publish_errors():
    """Bad PUBLISHes from a client get their reason codes: topic alias 0
    (0x94), a subscription identifier in a PUBLISH (0x82), an empty topic
    without an alias (0x82), a packet over the broker's maximum (0x95)."""
    cases = [
        ("alias 0", mstr("t") + varint(3) + bytes([0x23, 0, 0]) + b"x", 0x94),
        ("subscription id in PUBLISH", mstr("t") + varint(2) + bytes([0x0B, 1]) + b"x", 0x82),
        ("empty topic, no alias", mstr("") + varint(0) + b"x", 0x82),
    ]
    bad = []
    for name, body, code in cases:
        s, _ = raw_v5_connack(uid("v5-puberr"))
        s.sendall(bytes([0x30]) + varint(len(body)) + body)
        if not closed_with(s, code):
            bad.append(name)
        s.close()
    # Over the Maximum Packet Size of the CONNACK: 0x95 [MQTT-3.2.2-15];
    # the broker can tell from the fixed header.
    c = Client(uid("v5-max-of"), v5=True)
    maxp = getattr(c.props, "MaximumPacketSize", None)
    c.stop()
    if maxp and maxp < 200 << 20:
        s, _ = raw_v5_connack(uid("v5-toobig"))
        head = mstr("big") + varint(0)
        s.sendall(bytes([0x30]) + varint(maxp + 1) + head + b"x" * 65536)
        if not closed_with(s, 0x95):
            bad.append("a packet over the maximum packet size")
        s.close()
    expect(not bad, "no DISCONNECT with the right reason for: %s" % ", ".join(bad))


def v5_connack_capabilities():
    c = Client(uid("v5-caps"), v5=True)
    p = c.props
    c.stop()
    for name in ("RetainAvailable", "WildcardSubscriptionAvailable", "SharedSubscriptionAvailable",
                 "SubscriptionIdentifierAvailable"):
        v = getattr(p, name, 1)
        expect(v == 1, "%s = %r, though the broker does it" % (name, v))
    ma = getattr(p, "MaximumQoS", 2)
    expect(ma == 2 or ma == 1, "MaximumQoS %r" % ma)


def v5_bad_shared_filters():
    bad = []
    for f in ("$share/grp", "$share//t", "$share/g+/t", "$share/g#/t"):
        s, _ = raw_v5_connack(uid("v5-badshare"))
        body = struct.pack(">H", 9) + varint(0) + mstr(f) + bytes([1])
        s.sendall(bytes([0x82]) + varint(len(body)) + body)
        s.settimeout(WAIT)
        try:
            kind, rest = raw_read(s)
        except (Check, OSError):
            kind, rest = 0, b""
        s.close()
        refused = (kind == 0x90 and rest[3:4] >= b"\x80") or kind == 0xE0
        if not refused:
            bad.append(f)
    expect(not bad, "accepted invalid shared filters: %r" % bad)


def v5_unsubscribe_shared():
    t = uid("v5unshare/t")
    a = Client(uid("v5-unshare"), v5=True)
    a.sub("$share/g/" + t, 1)
    a.unsub("$share/g/" + t)
    p = Client(uid("v5-unshare-pub"), v5=True)
    p.pub(t, "after", 1)
    p.stop()
    late = a.quiet(1.0)
    a.stop()
    expect(not late, "delivered to a shared subscription after UNSUBSCRIBE")


def v5_request_problem_info():
    """With Request Problem Information 0 the broker sends no Reason String
    except in PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29]: a SUBACK
    refusing a filter carries none."""
    s, _ = raw_v5_connack(uid("v5-rpi"), props=bytes([0x17, 0]))
    body = struct.pack(">H", 4) + varint(0) + mstr("a/#/b") + bytes([1])
    s.sendall(bytes([0x82]) + varint(len(body)) + body)
    kind, rest = raw_read(s)
    s.close()
    expect(kind == 0x90, "no SUBACK: 0x%x" % kind)
    plen = rest[2]
    expect(b"\x1f" not in rest[3:3 + plen], "SUBACK carries a reason string despite Request Problem Information 0")


def v5_will_retained_and_props():
    t = uid("v5willret/t")
    wp = bytes([0x03]) + mstr("text/plain")  # content type
    w = raw_connect(uid("v5-willret"), v5=True, will=(t, "bye", 1, True), will_props=wp)
    w.close()
    time.sleep(0.5)
    s = Client(uid("v5-willret-sub"), v5=True)
    s.sub(t, 1)
    got = s.got(1)
    s.stop()
    c = Client(uid("v5-willret-clear"), v5=True)
    c.pub(t, "", 1, retain=True)
    c.stop()
    expect(got and got[0].payload == b"bye" and got[0].retain, "retained will not kept for a late subscriber")
    expect(getattr(got[0].properties, "ContentType", None) == "text/plain", "will's content type lost")


def v3_qos2_exactly_once_inbound():
    """A QoS 2 PUBLISH sent again (DUP) before its PUBREL is delivered once
    [MQTT-4.3.3-9]."""
    t = uid("qos2in/t")
    sub = Client(uid("qos2in-sub"))
    sub.sub(t, 2)
    s = raw_connect(uid("qos2in-pub"))
    body = mstr(t) + struct.pack(">H", 5) + b"once"
    s.sendall(bytes([0x34]) + varint(len(body)) + body)  # QoS 2
    kind, rest = raw_read(s)
    expect(kind == 0x50 and rest[:2] == b"\x00\x05", "no PUBREC: 0x%x" % kind)
    s.sendall(bytes([0x3C]) + varint(len(body)) + body)  # again, DUP
    kind, rest = raw_read(s)
    expect(kind == 0x50, "no PUBREC for the resend: 0x%x" % kind)
    s.sendall(bytes([0x62, 2, 0, 5]))  # PUBREL
    kind, rest = raw_read(s)
    s.close()
    got = sub.got(2, 1.5)
    sub.stop()
    expect(kind == 0x70, "no PUBCOMP: 0x%x" % kind)
    expect([m.payload for m in got] == [b"once"], "a QoS 2 message sent twice before PUBREL was delivered %d times" % len(got))


def v5_publish_fields(body):
    """(topic, properties bytes, payload) of a QoS 0 MQTT 5 PUBLISH body."""
    n = struct.unpack(">H", body[:2])[0]
    topic = body[2:2 + n].decode()
    plen, p = read_varint(body, 2 + n)
    return topic, body[p:p + plen], body[p + plen:]


def v5_props(pr):
    """The properties of a PUBLISH as {identifier: value} (the last of a
    repeated one)."""
    out, i = {}, 0
    while i < len(pr):
        ident = pr[i]
        i += 1
        if ident in (0x01,):
            v, i = pr[i], i + 1
        elif ident in (0x23,):
            v, i = struct.unpack(">H", pr[i:i + 2])[0], i + 2
        elif ident in (0x02,):
            v, i = struct.unpack(">I", pr[i:i + 4])[0], i + 4
        elif ident in (0x03, 0x08, 0x09):
            n = struct.unpack(">H", pr[i:i + 2])[0]
            v, i = pr[i + 2:i + 2 + n], i + 2 + n
        elif ident == 0x26:
            n = struct.unpack(">H", pr[i:i + 2])[0]
            m = struct.unpack(">H", pr[i + 2 + n:i + 4 + n])[0]
            v, i = (pr[i + 2:i + 2 + n], pr[i + 4 + n:i + 4 + n + m]), i + 4 + n + m
        elif ident == 0x0B:
            v, i = read_varint(pr, i)
        else:
            raise Check("PUBLISH with property 0x%x" % ident)
        out[ident] = v
    return out


def v5_server_topic_alias():
    """With the client's Topic Alias Maximum the server may use aliases: a
    topic with an alias first, then the alias alone, never one over the
    maximum [MQTT-3.3.2-10, -11]. (Raw: paho 1.6 does not map aliases it
    receives.)"""
    t = uid("v5srvalias/t")
    s = raw_connect(uid("v5-srvalias"), v5=True, props=bytes([0x22, 0, 2]))  # Topic Alias Maximum 2
    raw_subscribe(s, t, 0, v5=True)
    p = Client(uid("v5-srvalias-pub"), v5=True)
    for i in range(4):
        p.pub(t, str(i), 1)
    p.stop()
    known, got = {}, []
    for _ in range(4):
        kind, body = raw_read(s)
        expect(kind >> 4 == 3, "not a PUBLISH: 0x%x" % kind)
        topic, pr, payload = v5_publish_fields(body)
        alias = v5_props(pr).get(0x23)
        if alias is not None:
            expect(1 <= alias <= 2, "alias %d over the maximum 2" % alias)
            if topic:
                known[alias] = topic
            else:
                expect(alias in known, "alias %d used before it was set" % alias)
                topic = known[alias]
        got.append((topic, payload))
    s.close()
    expect(got == [(t, str(i).encode()) for i in range(4)], "with server aliases: %r" % got)


def v5_retain_handling_1():
    """Retain handling 1: retained messages only for a new subscription."""
    t = uid("v5rh1/t")
    r = Client(uid("v5-rh1-pub"), v5=True)
    r.pub(t, "kept", 1, retain=True)
    r.stop()
    c = Client(uid("v5-rh1"), v5=True)
    opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    c.sub(t, options=opts)
    first = c.got(1)
    c.sub(t, options=opts)  # the same subscription again: not new
    again = c.quiet(1.0)
    c.stop()
    r = Client(uid("v5-rh1-clear"), v5=True)
    r.pub(t, "", 1, retain=True)
    r.stop()
    expect(first and first[0].payload == b"kept", "retain handling 1: nothing on a new subscription")
    expect(not again, "retain handling 1: retained sent again for an existing subscription")


def v5_overlapping_subscription_ids():
    """One copy for overlapping subscriptions carries every matching
    subscription identifier [MQTT-3.3.4-5]; one copy each carries its own."""
    root = uid("v5ovl")
    c = Client(uid("v5-ovl"), v5=True)
    c.sub(root + "/#", 1, props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=1))
    c.sub(root + "/+", 1, props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=2))
    c.pub(root + "/x", "o", 1)
    got = c.got(2, 1.5)
    c.stop()
    ids = sorted(sorted(getattr(m.properties, "SubscriptionIdentifier", [])) for m in got)
    expect(ids in ([[1, 2]], [[1], [2]]), "subscription identifiers of overlapping subscriptions: %r" % ids)


def over_websocket(v5):
    """A round trip at QoS 1 over WebSocket (/mqtt on the HTTP port,
    subprotocol mqtt), to a subscriber on plain TCP."""
    def check():
        t = uid("ws/t")
        sub = Client(uid("ws-sub"), v5=v5)
        sub.sub(t, 1)
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        c = mqtt.Client(client_id=uid("ws-pub"), protocol=proto, transport="websockets")
        c.ws_set_options(path="/mqtt")
        acked = queue.Queue()
        c.on_connect = lambda *a: acked.put("connected")
        c.connect(HOST, HTTP_PORT, 30)
        c.loop_start()
        try:
            expect(acked.get(timeout=WAIT) == "connected", "no CONNACK over WebSocket")
            info = c.publish(t, "over ws", 1)
            info.wait_for_publish(timeout=WAIT)
            expect(info.is_published(), "no PUBACK over WebSocket")
        except queue.Empty:
            raise Check("no CONNACK over WebSocket within %.0f s" % WAIT)
        finally:
            c.disconnect()
            c.loop_stop()
        got = sub.got(1)
        sub.stop()
        expect(got and got[0].payload == b"over ws", "message sent over WebSocket not delivered")
    return check


CHECKS = [
    ("v3 QoS 0/1/2 round trip", v3_basic),
    ("v3 retained set and cleared", v3_retained),
    ("v3 offline queue of a persistent session", v3_offline_queue),
    ("v3 will on a dropped connection, none after DISCONNECT", v3_will),
    ("v3 keepalive closes a silent client", v3_keepalive),
    ("v3 overlapping subscriptions", v3_overlapping),
    ("v3 # does not match $ topics", v3_dollar_topics),
    ("v3 unsubscribe", v3_unsubscribe),
    ("v3 zero-length client id", v3_zero_length_id),
    ("v3 QoS 1 order", v3_order),
    ("v3.1 (MQIsdp) client", v31_connect),
    ("v3 redelivery with DUP and the same packet ids", v3_redelivery),
    ("v3 PUBREL sent again to a returning session", v3_pubrel_resent),
    ("v3 second connection of a client id takes over", v3_takeover),
    ("v3 retained QoS capped by the subscription", v3_retained_qos_downgrade),
    ("v3 PUBLISH to a wildcard topic closes", v3_wildcard_publish_refused),
    ("v3 second CONNECT closes", v3_second_connect_refused),
    ("v3 QoS 2 inbound delivered once though sent twice", v3_qos2_exactly_once_inbound),
    ("v3 over WebSocket", over_websocket(False)),
    ("v5 session expiry", v5_session_expiry),
    ("v5 will delay, cancelled by a return", v5_will_delay),
    ("v5 no local, retain handling, retain as published", v5_no_local_and_retain_options),
    ("v5 shared subscription", v5_shared),
    ("v5 publish properties forwarded", v5_properties),
    ("v5 message expiry in an offline queue", v5_message_expiry),
    ("v5 topic alias", v5_topic_alias),
    ("v5 topic alias over the maximum", v5_alias_out_of_range),
    ("v5 maximum packet size", v5_maximum_packet_size),
    ("v5 assigned client identifier", v5_assigned_id),
    ("v5 SUBACK and UNSUBACK reason codes", v5_reason_codes),
    ("v5 subscription identifier", v5_subscription_identifier),
    ("v5 receive maximum", v5_receive_maximum),
    ("v5 second connection of a client id takes over", v5_takeover_reason),
    ("v5 no local on a shared subscription refused", v5_shared_no_local_refused),
    ("v5 server keep alive", v5_server_keepalive),
    ("v5 bad PUBLISH reason codes", v5_publish_errors),
    ("v5 CONNACK capabilities", v5_connack_capabilities),
    ("v5 invalid shared subscription filters refused", v5_bad_shared_filters),
    ("v5 unsubscribe a shared subscription", v5_unsubscribe_shared),
    ("v5 request problem information 0", v5_request_problem_info),
    ("v5 retained will with properties", v5_will_retained_and_props),
    ("v5 topic aliases from the server", v5_server_topic_alias),
    ("v5 retain handling 1", v5_retain_handling_1),
    ("v5 overlapping subscriptions' identifiers", v5_overlapping_subscription_ids),
    ("v5 over WebSocket", over_websocket(True)),
]


# -- the runner, shared by paho_cluster.py and native_interop.py ------------

def free_port(host=None):
    s = socket.socket()
    s.bind((host or HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(servers, limit=15.0):
    """Waits until every (process, (host, port)) accepts; prints the FAIL
    line and returns False if one exits first or limit passes."""
    end = time.time() + limit
    for proc, addr in servers:
        while True:
            try:
                socket.create_connection(addr, timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > end:
                    print("FAIL setup: the server did not listen on %s:%d" % addr)
                    return False
                time.sleep(0.05)
    return True


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_checks(checks, first_is_setup=False):
    """Runs (name, check) pairs (those whose name contains $CHECKS, if set),
    printing PASS or FAIL for each; returns (passed, failed). With
    first_is_setup, a failed first check stops the run."""
    passed = failed = 0
    only = os.environ.get("CHECKS", "")
    for k, (name, fn) in enumerate(checks):
        if only and only not in name and not (first_is_setup and k == 0):
            continue
        try:
            fn()
            print("PASS " + name)
            passed += 1
        except Check as e:
            print("FAIL %s\n    %s" % (name, e))
            failed += 1
        except Exception:
            print("FAIL %s\n    %s" % (name, traceback.format_exc().replace("\n", "\n    ")))
            failed += 1
        if first_is_setup and k == 0 and failed:
            break  # nothing else can pass
    return passed, failed


def serve_one(checks, prefix, mqtt_port, native_port, http_port):
    """The main of a script whose checks need one `BIN server` (BIN is the
    one argument) on HOST with these ports: starts it on a throwaway data
    dir, runs the checks, prints the summary; returns the exit status."""
    if len(sys.argv) != 2:
        print("usage: %s path/to/cim" % sys.argv[0])
        return 2
    tmp = tempfile.mkdtemp(prefix=prefix)
    srv = subprocess.Popen([os.path.abspath(sys.argv[1]), "server", "--mqtt-addr", "%s:%d" % (HOST, mqtt_port),
                            "--native-addr", "%s:%d" % (HOST, native_port), "--http-addr", "%s:%d" % (HOST, http_port),
                            "--data-dir", os.path.join(tmp, "data"), "--log-level", "error"], cwd=tmp)
    passed, failed = 0, 1
    try:
        if listening([(srv, (HOST, p)) for p in (mqtt_port, native_port, http_port)]):
            passed, failed = run_checks(checks)
    finally:
        stop([srv])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    global PORT, HTTP_PORT
    PORT, HTTP_PORT = free_port(), free_port()
    return serve_one(CHECKS, "cim-paho.", PORT, free_port(), HTTP_PORT)


if __name__ == "__main__":
    sys.exit(main())
