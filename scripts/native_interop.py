#!/usr/bin/python3
"""native_interop.py BIN: cim's native protocol spoken by a client written
from its documentation alone (broker/wire/doc.go, docs/native-protocol.md),
with Debian's python3-msgpack, against `BIN server`; MQTT interop with
python3-paho-mqtt.

Nothing here shares code with the Go SDK: a frame is a uvarint length, a
type byte and a msgpack map, as the documentation draws it. Checks the
login flow (token, wrong password, frames before login, takeover), private
messages with acks and QoS 1 redelivery, offline messages, batches in
order, groups, everyone, topics both ways with MQTT, and bad frames (unknown
type, invalid msgpack, oversize). Prints PASS or FAIL per check and "N
passed, M failed"; non-zero exit if anything failed. Every wait is bounded.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import urllib.request

import msgpack

import paho_interop as pi
from paho_interop import Check, expect, uid

HOST = "127.0.0.1"
NATIVE = HTTP = 0
WAIT = 5.0

# Frame types (doc.go, "Frame types").
LOGIN, LOGIN_ACK, PING, PONG, SEND, SEND_ACK, DELIVER, DELIVER_ACK = range(1, 9)
SUBSCRIBE, SUB_ACK, UNSUBSCRIBE, UNSUB_ACK, REQUEST, RESPONSE, KICK, ERROR = range(9, 17)
# Kinds of a target.
K_USER, K_GROUP, K_TOPIC, K_ALL = 1, 2, 3, 4


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(typ, body):
    raw = bytes([typ]) + msgpack.packb(body, use_bin_type=True)
    return uvarint(len(raw)) + raw


class WsSocket:
    """A WebSocket client (RFC 6455) as far as /ws needs. Over WebSocket a
    binary message is one frame without its length prefix
    (docs/native-protocol.md): sendall takes whole frames and sends each as
    a masked message; recv gives a message back with its prefix."""

    def __init__(self, path):
        self.s = socket.create_connection((HOST, HTTP), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, HOST, HTTP, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            expect(chunk, "connection closed during the WebSocket handshake")
            head += chunk
        head, self.rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        expect(lines[0].split()[1] == "101", "WebSocket handshake: %s" % lines[0])
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        accept = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("sec-websocket-accept:")]
        expect(accept == [want], "Sec-WebSocket-Accept %r, want %r" % (accept, want))

    def settimeout(self, t):
        self.s.settimeout(t)

    def sendall(self, frames):
        while frames:
            n, i = pi.read_varint(frames, 0)
            self.message(frames[i:i + n])
            frames = frames[i + n:]

    def message(self, data):
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _take(self, n):
        while len(self.rest) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def recv(self, _n):
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._take(8))[0]
            payload = self._take(n)
            op = b0 & 0x0F
            if op == 8:
                return b""  # close
            if op in (0, 1, 2):
                return uvarint(len(payload)) + payload

    def close(self):
        self.s.close()


class Conn:
    """One native connection: frames out, frames in (type, map); over TCP,
    or over WebSocket at path."""

    def __init__(self, ws=None):
        self.s = WsSocket(ws) if ws else socket.create_connection((HOST, NATIVE), timeout=WAIT)
        self.buf = b""

    def send(self, typ, body):
        self.s.sendall(frame(typ, body))

    def raw(self, b):
        self.s.sendall(b)

    def read(self, wait=WAIT):
        """The next frame, or None when nothing comes within wait; EOF raises."""
        self.s.settimeout(wait)
        end = time.time() + wait
        while True:
            try:
                n, i = pi.read_varint(self.buf, 0)
            except IndexError:  # the prefix is not all here yet
                n, i = 1 << 62, 0
            if len(self.buf) >= i + n:
                typ, body = self.buf[i], self.buf[i + 1:i + n]
                self.buf = self.buf[i + n:]
                return typ, msgpack.unpackb(body, raw=False) if body else {}
            try:
                self.s.settimeout(max(end - time.time(), 0.01))
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def expect(self, typ, wait=WAIT):
        while True:
            f = self.read(wait)
            expect(f is not None, "no frame of type %d within %.1f s" % (typ, wait))
            if f[0] in (PING, PONG) and f[0] != typ:
                continue
            expect(f[0] == typ, "want frame type %d, got %d %r" % (typ, f[0], f[1]))
            return f[1]

    def closed(self, wait=WAIT):
        """True once the server closes (frames before it are skipped)."""
        end = time.time() + wait
        try:
            while time.time() < end:
                if self.read(max(end - time.time(), 0.01)) is None:
                    return False
        except (EOFError, ConnectionResetError):
            return True
        return False

    def close(self):
        self.s.close()


def http(method, path, body=None):
    req = urllib.request.Request("http://%s:%d%s" % (HOST, HTTP, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def account(name):
    """Registers name with a password; returns (id, name, password)."""
    pw = "pw-" + name
    status, body = http("POST", "/v1/accounts", {"name": name, "password": pw})
    expect(status in (200, 201), "register %s: HTTP %d %r" % (name, status, body))
    expect(body.get("code") == "9000", "register %s: %r" % (name, body))
    return int(body["dataBody"]["id"]), name, pw


def login(acct, ws=None, **extra):
    c = Conn(ws)
    c.send(LOGIN, dict({"n": acct[1], "p": acct[2], "v": "native_interop.py"}, **extra))
    ack = c.expect(LOGIN_ACK)
    expect(ack.get("c") == 9000, "login of %s: %r" % (acct[1], ack))
    return c, ack


# -- checks ------------------------------------------------------------------

def login_flow():
    a = account(uid("ann"))
    c, ack = login(a)
    for k in ("u", "n", "t", "e", "ts", "o", "k", "x"):
        expect(k in ack, "login-ack without %r: %r" % (k, ack))
    expect(ack["u"] == a[0] and ack["n"] == a[1], "login-ack names %r/%r, want %r" % (ack["u"], ack["n"], a[:2]))
    expect(abs(ack["ts"] - time.time() * 1000) < 60000, "server time %r" % ack["ts"])
    c.send(PING, {})
    expect(c.expect(PONG) == {}, "pong not an empty map")
    c.close()
    # The token logs in without the password.
    t = Conn()
    t.send(LOGIN, {"u": a[0], "t": ack["t"]})
    ok = t.expect(LOGIN_ACK)
    t.close()
    expect(ok.get("c") == 9000, "login by token: %r" % ok)
    # A wrong password: 9100 and a close.
    w = Conn()
    w.send(LOGIN, {"n": a[1], "p": "wrong"})
    bad = w.expect(LOGIN_ACK)
    closed = w.closed()
    w.close()
    expect(bad.get("c") == 9100, "wrong password: code %r, want 9100" % bad.get("c"))
    expect(closed, "connection open after a refused login")


def before_login():
    c = Conn()
    c.send(SEND, {"i": 1, "k": K_ALL, "b": b"too early"})
    f = c.read()
    closed = c.closed()
    c.close()
    expect(f is not None and f[0] == ERROR and f[1].get("c") == 3004, "a send before login: %r, want error 3004" % (f,))
    expect(closed, "connection open after a frame before login")


def private_qos1():
    a, b = account(uid("pa")), account(uid("pb"))
    ca, _ = login(a)
    cb, _ = login(b)
    ca.send(SEND, {"i": 7, "k": K_USER, "u": b[0], "q": 1, "b": b"hello bob"})
    sa = ca.expect(SEND_ACK)
    d = cb.expect(DELIVER)
    expect(sa.get("i") == 7 and sa.get("c") == 9000 and sa.get("s"), "send-ack %r" % sa)
    expect(d.get("i") == sa["s"], "deliver id %r, send-ack's server id %r" % (d.get("i"), sa["s"]))
    expect(d.get("f") == a[0] and d.get("n") == a[1], "sender %r/%r, want %r" % (d.get("f"), d.get("n"), a[:2]))
    expect(d.get("k") == K_USER and d.get("b") == b"hello bob" and d.get("q") == 1, "deliver %r" % d)
    # Not acknowledged: it comes again on the next login.
    cb.close()
    time.sleep(0.3)
    cb, _ = login(b)
    again = cb.expect(DELIVER)
    cb.send(DELIVER_ACK, {"i": again["i"]})
    expect(again.get("i") == d["i"] and again.get("b") == b"hello bob", "unacked deliver not sent again: %r" % again)
    # Acknowledged: it does not.
    cb.close()
    time.sleep(0.3)
    cb, _ = login(b)
    f = cb.read(1.0)
    ca.close()
    cb.close()
    expect(f is None or f[0] != DELIVER, "acknowledged deliver sent again: %r" % (f,))


def offline_then_online():
    a, b = account(uid("oa")), account(uid("ob"))
    ca, _ = login(a)
    ca.send(SEND, {"i": 1, "k": K_USER, "u": b[0], "q": 1, "b": b"while away"})
    sa = ca.expect(SEND_ACK)
    expect(sa.get("c") == 7000, "send to an offline user: code %r, want 7000" % sa.get("c"))
    cb, _ = login(b)
    d = cb.expect(DELIVER)
    cb.send(DELIVER_ACK, {"i": d["i"]})
    ca.close()
    cb.close()
    expect(d.get("o") is True and d.get("b") == b"while away" and d.get("f") == a[0], "offline deliver %r" % d)


def batch_in_order():
    a, b = account(uid("ba")), account(uid("bb"))
    ca, _ = login(a)
    cb, _ = login(b)
    bodies = [("m%d" % i).encode() for i in range(5)]
    ca.send(SEND, {"i": 100, "k": K_USER, "u": b[0], "q": 1, "a": bodies})
    acks = [ca.expect(SEND_ACK) for _ in bodies]
    got = []
    for _ in bodies:
        d = cb.expect(DELIVER)
        got.append(d.get("b"))
        cb.send(DELIVER_ACK, {"i": d["i"]})
    ca.close()
    cb.close()
    expect(sorted(x.get("i") for x in acks) == list(range(100, 105)), "batch acks for ids %r" % [x.get("i") for x in acks])
    expect(all(x.get("c") == 9000 for x in acks), "batch codes %r" % [x.get("c") for x in acks])
    expect(got == bodies, "batch delivered %r" % got)


def request(c, rid, method, args=None):
    body = {"i": rid, "m": method}
    if args is not None:
        body["a"] = args
    c.send(REQUEST, body)
    r = c.expect(RESPONSE)
    expect(r.get("i") == rid, "response for %r, want %d" % (r.get("i"), rid))
    return r


def groups_and_everyone():
    a, b, c3 = account(uid("ga")), account(uid("gb")), account(uid("gc"))
    ca, _ = login(a)
    cb, _ = login(b)
    cc, _ = login(c3)
    g = uid("team")
    # A wrong argument: 3000, the text naming what the method takes.
    r = request(ca, 9, "group.create", {"name": g})
    expect(r.get("c") == 3000 and "n:" in r.get("m", ""), "group.create with a wrong key: %r" % r)
    r = request(ca, 1, "group.create", {"n": g})
    expect(r.get("c") == 9000, "group.create: %r" % r)
    r = request(cb, 2, "group.join", {"n": g})
    expect(r.get("c") == 9000, "group.join: %r" % r)
    r = request(ca, 3, "group.members", {"n": g})
    expect(r.get("c") == 9000, "group.members: %r" % r)
    names = sorted(u.get("n") for u in r.get("r", {}).get("u", []))
    expect(names == sorted([a[1], b[1]]), "group.members: %r" % names)
    ca.send(SEND, {"i": 1, "k": K_GROUP, "t": g, "b": b"to the team"})
    ca.expect(SEND_ACK)
    d = cb.expect(DELIVER)
    expect(d.get("k") == K_GROUP and d.get("t") == g and d.get("b") == b"to the team", "group deliver %r" % d)
    f = cc.read(0.7)
    expect(f is None or f[0] != DELIVER, "a non-member got the group's message: %r" % (f,))
    # Everyone: every other user online, not the sender.
    ca.send(SEND, {"i": 2, "k": K_ALL, "b": b"hi all"})
    ca.expect(SEND_ACK)
    for who in (cb, cc):
        d = who.expect(DELIVER)
        expect(d.get("k") == K_ALL and d.get("b") == b"hi all", "everyone deliver %r" % d)
    own = ca.read(0.7)
    for x in (ca, cb, cc):
        x.close()
    expect(own is None or own[0] != DELIVER, "the sender got its own message to everyone")


def topics_with_mqtt():
    a = account(uid("ta"))
    ca, _ = login(a)
    t = uid("dev/temp")
    ca.send(SUBSCRIBE, {"i": 1, "f": [t], "q": 1})
    sa = ca.expect(SUB_ACK)
    expect(sa.get("i") == 1 and sa.get("c") == [9000], "sub-ack %r" % sa)
    m = pi.Client(uid("ta-mqtt"), v5=True)
    m.sub(t + "/out", 1)
    m.pub(t, "21.5", 1)  # MQTT -> native
    d = ca.expect(DELIVER)
    ca.send(DELIVER_ACK, {"i": d.get("i", 0)})
    ca.send(SEND, {"i": 2, "k": K_TOPIC, "t": t + "/out", "b": b"native says hi"})  # native -> MQTT
    ca.expect(SEND_ACK)
    got = m.got(1)
    m.stop()
    ca.close()
    expect(d.get("k") == K_TOPIC and d.get("t") == t and d.get("b") == b"21.5", "MQTT to native: %r" % d)
    expect(got and got[0].payload == b"native says hi", "native to MQTT: nothing")
    props = dict(getattr(got[0].properties, "UserProperty", []) or [])
    expect(props.get("cim-sender") == a[1], "MQTT 5 subscriber lacks the sender's name: %r" % props)


def takeover():
    a = account(uid("ka"))
    old, _ = login(a)
    new, _ = login(a)
    k = old.expect(KICK)
    closed = old.closed()
    old.close()
    new.close()
    expect(k.get("c") == 5003, "kick code %r, want 5003" % k.get("c"))
    expect(closed, "old connection open after the kick")


def bad_frames():
    a = account(uid("bad"))
    c, ack = login(a)
    # Unknown type: error 3001, the connection stays.
    c.raw(uvarint(2) + bytes([0x3f, 0x80]))
    e = c.expect(ERROR)
    c.send(PING, {})
    pong = c.expect(PONG)
    expect(e.get("c") == 3001, "unknown frame type: %r, want 3001" % e)
    expect(pong == {}, "connection unusable after an unknown frame")

    def refused(c, raw, code, what):  # an error frame with code, then a close
        c.raw(raw)
        e = c.read()
        closed = c.closed()
        c.close()
        expect(e is not None and e[0] == ERROR and e[1].get("c") == code, "%s: %r, want error %d" % (what, e, code))
        expect(closed, "connection open after " + what)

    refused(c, uvarint(3) + bytes([SEND, 0xc1, 0xc1]), 3003, "invalid msgpack")
    # Over the maximum the login-ack announced, seen from the length prefix alone.
    c, ack = login(a)
    refused(c, uvarint(ack["x"] + 1) + bytes([SEND]), 3002, "an oversize frame")
    # Unknown receiver and empty body: their codes, the connection stays.
    c, _ = login(a)
    c.send(SEND, {"i": 1, "k": K_USER, "u": 987654321, "b": b"x"})
    r1 = c.expect(SEND_ACK)
    c.send(SEND, {"i": 2, "k": K_USER, "u": a[0]})
    r2 = c.expect(SEND_ACK)
    c.close()
    expect(r1.get("c") == 3005, "unknown receiver: %r, want 3005" % r1)
    expect(r2.get("c") == 3006, "empty body: %r, want 3006" % r2)


def over_websocket():
    """Native frames as binary WebSocket messages at /ws, to and from a
    user on TCP."""
    a, b = account(uid("wsa")), account(uid("wsb"))
    ca, _ = login(a, ws="/ws")
    cb, _ = login(b)
    ca.send(SEND, {"i": 1, "k": K_USER, "u": b[0], "q": 1, "b": b"from a browser"})
    sa = ca.expect(SEND_ACK)
    d = cb.expect(DELIVER)
    cb.send(DELIVER_ACK, {"i": d["i"]})
    cb.send(SEND, {"i": 1, "k": K_USER, "u": a[0], "b": b"back over ws"})
    back = ca.expect(DELIVER)
    ca.send(PING, {})
    pong = ca.expect(PONG)
    ca.close()
    cb.close()
    expect(sa.get("c") == 9000 and d.get("b") == b"from a browser" and d.get("f") == a[0], "ws to tcp: %r %r" % (sa, d))
    expect(back.get("b") == b"back over ws", "tcp to ws: %r" % back)
    expect(pong == {}, "ping over ws")


def http_api_is_native():
    """A message sent through POST /v1/messages is the same message as one
    sent over a connection: delivered with its server id, sender and body,
    stored for an offline receiver (7000), kept in history (GET
    /v1/history, keyword search), and delayed ones listed (GET
    /v1/delayed) until due (docs/im.md)."""
    a, b = account(uid("ha")), account(uid("hb"))
    cb, _ = login(b)
    word = uid("kiwi").replace("-", "")
    st, r = http("POST", "/v1/messages", {"from": a[0], "to": "user:%d" % b[0], "body": "about " + word, "qos": 1})
    expect(st == 200 and r.get("code") == "9000", "POST /v1/messages: HTTP %d %r" % (st, r))
    sent = r["dataBody"][0]
    d = cb.expect(DELIVER)
    cb.send(DELIVER_ACK, {"i": d["i"]})
    # (msgId is a JSON string: 64 bits do not fit JavaScript's numbers)
    expect(str(d.get("i")) == sent.get("msgId") and d.get("f") == a[0] and d.get("b") == ("about " + word).encode(),
           "HTTP send delivered as %r, acked as %r" % (d, sent))
    cb.close()
    time.sleep(0.3)
    st, r = http("POST", "/v1/messages", {"from": a[0], "to": "user:%d" % b[0], "body": "later", "qos": 1})
    expect(r.get("dataBody", [{}])[0].get("code") == "7000" or r.get("code") == "7000",
           "to an offline user over HTTP: %r, want 7000" % r)
    st, r = http("POST", "/v1/messages", {"from": a[0], "to": "user:%d" % b[0], "body": "in a minute", "qos": 1, "delayMs": 60000})
    expect(st == 200 and r.get("code") in ("9000", "7000"), "delayed send: %r" % r)
    st, dl = http("GET", "/v1/delayed?user=%d&limit=10" % a[0])
    expect(st == 200 and any(x.get("body") in ("in a minute", base64.b64encode(b"in a minute").decode())
                             for x in dl.get("dataBody") or []), "GET /v1/delayed: %r" % dl)
    st, h = http("GET", "/v1/history?user=%d&with=user:%d&q=%s&limit=10" % (b[0], a[0], word))
    msgs = (h.get("dataBody") or {}).get("messages") or []
    expect(st == 200 and len(msgs) == 1, "GET /v1/history keyword search: HTTP %d %r" % (st, h))
    cb, _ = login(b)
    late = cb.expect(DELIVER)
    cb.send(DELIVER_ACK, {"i": late["i"]})
    cb.close()
    expect(late.get("o") is True and late.get("b") == b"later", "offline message sent over HTTP: %r" % late)
    st, bad = http("POST", "/v1/messages", {"from": a[0], "to": "user:%d" % b[0]})
    expect(st in (200, 400) and bad.get("code") == "3000" and "body" in bad.get("message", ""),
           "a send without a body: HTTP %d %r, want 3000 naming body" % (st, bad))
    st, empty = http("POST", "/v1/messages", {"from": a[0], "to": "user:%d" % b[0], "body": ""})
    expect(empty.get("code") == "3006", "a send with an empty body: %r, want 3006" % empty)


CHECKS = [
    ("login, token, wrong password", login_flow),
    ("a frame before login", before_login),
    ("private QoS 1: ack, redelivery until acked", private_qos1),
    ("offline, then online", offline_then_online),
    ("a batch in order", batch_in_order),
    ("groups and everyone", groups_and_everyone),
    ("topics both ways with MQTT", topics_with_mqtt),
    ("a second login takes over", takeover),
    ("bad frames and bad sends", bad_frames),
    ("over WebSocket (/ws)", over_websocket),
    ("the HTTP API's messages are native messages", http_api_is_native),
]


def main():
    global NATIVE, HTTP
    NATIVE, HTTP = pi.free_port(HOST), pi.free_port(HOST)
    pi.HOST, pi.PORT = HOST, pi.free_port(HOST)
    return pi.serve_one(CHECKS, "cim-native.", pi.PORT, NATIVE, HTTP)


if __name__ == "__main__":
    sys.exit(main())
