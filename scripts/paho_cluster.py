#!/usr/bin/python3
"""paho_cluster.py BIN: a three-node cluster of `BIN server` processes
checked with Eclipse Paho's Python client (python3-paho-mqtt) and the
native client of native_interop.py.

Starts three nodes on loopback addresses of their own (127.0.0.21-23, free
ports), joined through the first, waits until a publish on every node
reaches a subscriber on every other, then checks what a client of a
cluster relies on: delivery across nodes at every QoS and through
wildcards, a SUBACK and an UNSUBACK holding cluster-wide, native users on different
nodes (with python3-msgpack, through native_interop.py's client), retained
messages on a late subscriber of another node, a shared subscription
delivering once cluster-wide, a will reaching another node, a persistent
session taken over from another node with its queued messages and back, a
retained message cleared while a node was stopped, and GET /v1/cluster. Prints PASS
or FAIL per check and "N passed, M failed"; non-zero exit if anything
failed. Every wait is bounded.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import native_interop as ni
import paho_interop as pi
from paho_interop import Check, Client, expect, uid

SECRET = "paho-cluster-secret-0123456789"
nodes = []  # dicts: name, host, mqtt, http, args (to start it again), proc


def free_udp_tcp_port(host):
    for _ in range(20):
        p = pi.free_port(host)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, p))
            return p
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free tcp+udp port on " + host)


def on(node):
    """Points the paho_interop clients at node."""
    pi.HOST, pi.PORT = node["host"], node["mqtt"]


def client(node, cid, **kw):
    on(node)
    return Client(cid, **kw)


def waitfor(what, cond, limit=15.0):
    end = time.time() + limit
    while not cond():
        if time.time() > end:
            raise Check("timed out waiting for " + what)
        time.sleep(0.05)


def converge():
    """Every node's subscriber gets a publish from every other node."""
    subs = [client(n, uid("conv-sub-" + n["name"])) for n in nodes]
    for s in subs:
        s.sub("conv/#", 0)
    pubs = [client(n, uid("conv-pub-" + n["name"])) for n in nodes]
    want = {(i, j) for i in range(3) for j in range(3) if i != j}
    end = time.time() + 30
    while want and time.time() < end:
        for j, p in enumerate(pubs):
            p.c.publish("conv/%d" % j, "x", 0)
        time.sleep(0.1)
        for i, s in enumerate(subs):
            for m in s.quiet(0.01):
                j = int(m.topic.split("/")[1])
                want.discard((i, j))
    for c in subs + pubs:
        c.stop()
    expect(not want, "not converged after 30 s: missing (subscriber node, publisher node) %r" % sorted(want))


def across_nodes():
    root = uid("x")
    s2 = client(nodes[1], uid("x-s2"))
    s2.sub(root + "/+/c", 2)
    s3 = client(nodes[2], uid("x-s3"))
    s3.sub(root + "/#", 2)
    time.sleep(0.5)  # interest gossip
    p = client(nodes[0], uid("x-p"))
    for q in (0, 1, 2):
        p.pub("%s/b/c" % root, "q%d" % q, q)
    p.pub("%s/only3" % root, "three", 1)
    p.stop()
    g2, g3 = s2.got(3), s3.got(4)
    s2.stop()
    s3.stop()
    expect(sorted(m.payload for m in g2) == [b"q0", b"q1", b"q2"], "n2 via a/+/c: %r" % [m.payload for m in g2])
    expect(sorted(m.payload for m in g3) == [b"q0", b"q1", b"q2", b"three"], "n3 via a/#: %r" % [m.payload for m in g3])
    expect(sorted(m.qos for m in g2) == [0, 1, 2], "QoS across nodes: %r" % [m.qos for m in g2])


def subscribe_then_publish_elsewhere():
    """A publish on n1 right after a SUBACK on n2 (no pause) reaches the
    subscriber: the subscription holds cluster-wide from its SUBACK."""
    missed = []
    for i in range(20):
        t = uid("sp/t")
        s = client(nodes[1], uid("sp-sub"))
        s.sub(t, 1)
        p = client(nodes[0], uid("sp-pub"))
        p.pub(t, "now", 1)
        p.stop()
        if not s.got(1, 3.0):
            missed.append(i)
        s.stop()
    expect(not missed, "publishes right after a SUBACK on another node missed in rounds %r of 20" % missed)


def unsubscribe_holds_elsewhere():
    """After an UNSUBACK on n2, a publish on n1 no longer reaches the
    client (and its other subscription still does)."""
    root = uid("us")
    s = client(nodes[1], uid("us-sub"))
    s.sub(root + "/gone", 1)
    s.sub(root + "/kept", 1)
    s.unsub(root + "/gone")
    p = client(nodes[0], uid("us-pub"))
    p.pub(root + "/gone", "after unsubscribe", 1)
    p.pub(root + "/kept", "still", 1)
    p.stop()
    got = s.got(2, 2.0)
    s.stop()
    expect([m.payload for m in got] == [b"still"], "after UNSUBACK on n2, from n1: %r" % [m.payload for m in got])


def native_on(node):
    """Points the native_interop client at node."""
    ni.HOST, ni.NATIVE, ni.HTTP = node["host"], node["native"], node["http"]


def native_across():
    """Native users on two nodes: an account registered on n1 logs in on n3,
    a private message crosses with its ack, a message to a user offline
    everywhere is stored (7000) and delivered at their login on n2, and
    cim's /onlineUser on any node lists users online on every node."""
    native_on(nodes[0])
    a, b, c = ni.account(uid("na")), ni.account(uid("nb")), ni.account(uid("nc"))
    ca, _ = ni.login(a)
    native_on(nodes[2])
    cb = []

    def logged_in():  # the account reaches n3 with the directory
        try:
            cb[:] = [ni.login(b)[0]]
            return True
        except (Check, OSError, EOFError):
            return False

    waitfor("%s's account on n3" % b[1], logged_in, 10)
    cb = cb[0]
    # Presence follows a login over the peer links within milliseconds; a
    # send before n1 has heard of it is delivered but answered 7000
    # (docs/cluster.md, Known gaps): wait for it, as that gap allows.
    native_on(nodes[0])

    def b_online_on_n1():
        st, r = ni.http("GET", "/onlineUser")
        return any(u.get("userId") == b[0] for u in r.get("dataBody") or [])

    waitfor("%s online as n1 sees it" % b[1], b_online_on_n1, 5)
    ca.send(ni.SEND, {"i": 1, "k": ni.K_USER, "u": b[0], "q": 1, "b": b"across nodes"})
    sa = ca.expect(ni.SEND_ACK)
    d = cb.expect(ni.DELIVER)
    cb.send(ni.DELIVER_ACK, {"i": d["i"]})
    expect(sa.get("c") == 9000 and d.get("b") == b"across nodes" and d.get("f") == a[0], "across: %r %r" % (sa, d))
    native_on(nodes[1])
    users = []

    def both_online():
        st, r = ni.http("GET", "/onlineUser")
        users[:] = sorted(u.get("userName") for u in r.get("dataBody") or [])
        return users == sorted([a[1], b[1]])

    waitfor("both users in n2's /onlineUser", both_online, 5)
    ca.send(ni.SEND, {"i": 2, "k": ni.K_USER, "u": c[0], "q": 1, "b": b"for later"})
    off = ca.expect(ni.SEND_ACK)
    expect(off.get("c") == 7000, "to a user offline everywhere: %r, want 7000" % off)
    cc, _ = ni.login(c)  # on n2
    late = cc.expect(ni.DELIVER)
    cc.send(ni.DELIVER_ACK, {"i": late["i"]})
    for x in (ca, cb, cc):
        x.close()
    expect(late.get("o") is True and late.get("b") == b"for later", "offline message on n2: %r" % late)


def retained_across():
    t = uid("ret/t")
    p = client(nodes[0], uid("ret-p"))
    p.pub(t, "kept", 1, retain=True)
    p.stop()
    got = []

    def late_gets_it():
        s = client(nodes[2], uid("ret-late"))
        s.sub(t, 1)
        got[:] = s.got(1, 0.5)
        s.stop()
        return bool(got)

    waitfor("the retained message on n3", late_gets_it, 10)
    c = client(nodes[1], uid("ret-clear"))
    c.pub(t, "", 1, retain=True)
    c.stop()
    expect(got[0].payload == b"kept" and got[0].retain, "retained on n3: %r retain=%r" % (got[0].payload, got[0].retain))


def shared_once():
    t = uid("sh/t")
    members = [client(nodes[i], uid("sh-m%d" % i)) for i in (1, 2)]
    for m in members:
        m.sub("$share/workers/" + t, 1)
    time.sleep(0.5)
    pi.shared_delivery(members, client(nodes[0], uid("sh-p")), t, 30, 2.0)


def will_across():
    t = uid("will/t")
    s = client(nodes[2], uid("will-s"))
    s.sub(t, 1)
    time.sleep(0.5)
    on(nodes[0])
    w = pi.raw_connect(uid("will-dies"), will=(t, "gone", 1, False))
    w.close()
    got = s.got(1)
    s.stop()
    expect(got and got[0].payload == b"gone", "the will of a client on n1 did not reach n3")


def takeover_across():
    """A persistent session left on n1 is taken over on n3: session present,
    the messages queued meanwhile (published on n2) in order, new ones
    following it; then taken back on n1, which closes the n3 connection."""
    cid, t = uid("mover"), uid("mv/t")
    a = client(nodes[0], cid, clean=False)
    a.sub(t, 1)
    a.stop()
    time.sleep(0.5)
    p = client(nodes[1], uid("mv-p"))
    n = 20
    for i in range(n):
        p.pub(t, str(i), 1)
    on(nodes[2])
    b = pi.raw_connect(cid, clean=False)
    got = []
    for _ in range(n):
        topic, pid, payload, _ = pi.raw_publish_packet(*pi.raw_read(b))
        got.append(payload)
        b.sendall(bytes([0x40, 2]) + pid.to_bytes(2, "big"))  # PUBACK
    p.pub(t, "after", 1)
    after = pi.raw_publish_packet(*pi.raw_read(b))
    b.sendall(bytes([0x40, 2]) + after[1].to_bytes(2, "big"))
    back = client(nodes[0], cid, clean=False)
    present = back.flags.get("session present")
    closed = pi.closes(b)
    b.close()
    back.stop()
    Client(cid, clean=True).stop()  # end the session (on n1, where pi points)
    p.stop()
    expect([int(x) for x in got] == list(range(n)), "queued while away, on n3: %r" % got)
    expect(after[2] == b"after", "a message after the move did not follow the session")
    expect(present == 1, "session not present when taken back on n1")
    expect(closed, "the connection on n3 stayed open after n1 took the session")


def retained_cleared_while_away():
    """A node stopped, a retained message cleared meanwhile, the node started
    again on its data: a late subscriber there does not get the cleared
    message (it gets the other one)."""
    root = uid("away")
    p = client(nodes[0], uid("away-p"))
    p.pub(root + "/a", "stale", 1, retain=True)
    p.pub(root + "/b", "kept", 1, retain=True)
    n3 = nodes[2]
    time.sleep(0.5)  # replicated to n3
    pi.stop([n3["proc"]])
    time.sleep(2)  # dropped from the cluster (loopback timing)
    p.pub(root + "/a", "", 1, retain=True)
    p.stop()
    n3["proc"] = subprocess.Popen(n3["args"], cwd=n3["cwd"], env=n3["env"])
    expect(pi.listening([(n3["proc"], (n3["host"], n3["mqtt"]))]), "n3 did not listen again")
    got = []

    def only_kept():
        s = client(n3, uid("away-late"))
        s.sub(root + "/#", 1)
        got[:] = s.got(2, 0.7)
        s.stop()
        return [m.payload for m in got] == [b"kept"]

    try:
        waitfor("n3 to drop the cleared message", only_kept, 15)
    except Check:
        raise Check("late subscriber on n3 got %r, want only b'kept'" % [m.payload for m in got])
    c = client(nodes[0], uid("away-clear"))
    c.pub(root + "/b", "", 1, retain=True)
    c.stop()


def cluster_api():
    n = nodes[0]
    with urllib.request.urlopen("http://%s:%d/v1/cluster" % (n["host"], n["http"]), timeout=5) as r:
        body = json.load(r)
    members = {m["name"]: m for m in body.get("members", [])}
    expect(set(members) == {x["name"] for x in nodes}, "members %r" % sorted(members))
    expect(all(m["state"] == "alive" for m in members.values()), "states %r" % {k: v["state"] for k, v in members.items()})
    expect(all(m.get("addr") for m in members.values()), "a member without addr: %r" % members)


CHECKS = [
    ("cluster converges (every node reaches every other)", converge),
    ("QoS 0/1/2 and wildcards across nodes", across_nodes),
    ("a SUBACK holds cluster-wide at once", subscribe_then_publish_elsewhere),
    ("an UNSUBACK holds cluster-wide", unsubscribe_holds_elsewhere),
    ("native users on different nodes", native_across),
    ("retained message on a late subscriber of another node", retained_across),
    ("shared subscription once cluster-wide", shared_once),
    ("will reaches another node", will_across),
    ("persistent session taken over from another node", takeover_across),
    ("retained message cleared while a node was stopped", retained_cleared_while_away),
    ("GET /v1/cluster", cluster_api),
]


def main():
    if len(sys.argv) != 2:
        print("usage: %s path/to/cim" % sys.argv[0])
        return 2
    binary = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="cim-paho-cluster.")
    procs = []
    env = dict(os.environ, CIM_CLUSTER_SECRET=SECRET)
    passed, failed = 0, 1
    try:
        for i in range(3):
            host = "127.0.0.%d" % (21 + i)
            port = lambda: pi.free_port(host)
            n = {"name": "pc%d" % (i + 1), "host": host, "mqtt": port(), "http": port(), "native": port(),
                 "gossip": free_udp_tcp_port(host)}
            args = [binary, "server", "--node-name", n["name"], "--mqtt-addr", "%s:%d" % (host, n["mqtt"]),
                    "--native-addr", "%s:%d" % (host, n["native"]), "--http-addr", "%s:%d" % (host, n["http"]),
                    "--peer-addr", "%s:%d" % (host, port()), "--cluster-addr", "%s:%d" % (host, n["gossip"]),
                    "--cluster-timing", "loopback", "--data-dir", os.path.join(tmp, n["name"]), "--log-level", "error"]
            if nodes:
                args += ["--join", "%s:%d" % (nodes[0]["host"], nodes[0]["gossip"])]
            n.update(args=args, cwd=tmp, env=env)
            n["proc"] = subprocess.Popen(args, cwd=tmp, env=env)
            procs.append(n["proc"])
            nodes.append(n)
        if pi.listening([(p, (n["host"], n["mqtt"])) for p, n in zip(procs, nodes)]):
            passed, failed = pi.run_checks(CHECKS, first_is_setup=True)
    finally:
        pi.stop([n["proc"] for n in nodes])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
