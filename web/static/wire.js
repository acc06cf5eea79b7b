// cim's native protocol in the browser: msgpack, frames, and a client that
// logs in over the WebSocket /ws (one frame per binary message, without the
// length prefix), keeps the connection up and sends again what was not
// acknowledged. docs/native-protocol.md is the reference.

const te = new TextEncoder(), td = new TextDecoder();

// ---- msgpack (the subset the protocol uses, all of decoding) ----

export function encode(v) {
  const out = [];
  const u8 = (...b) => out.push(...b);
  const be = (n, bytes) => { for (let i = bytes - 1; i >= 0; i--) out.push(Number((BigInt(n) >> BigInt(8 * i)) & 255n)); };
  const put = (v) => {
    if (v === null || v === undefined) return u8(0xc0);
    if (v === true) return u8(0xc3);
    if (v === false) return u8(0xc2);
    if (typeof v === "bigint") {
      if (v >= 0n) { if (v < 2n ** 32n) return put(Number(v)); u8(0xcf); return be(v, 8); }
      u8(0xd3); return be(BigInt.asUintN(64, v), 8);
    }
    if (typeof v === "number") {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
        if (v >= 0) {
          if (v < 128) return u8(v);
          if (v < 256) return u8(0xcc, v);
          if (v < 65536) { u8(0xcd); return be(v, 2); }
          if (v < 2 ** 32) { u8(0xce); return be(v, 4); }
          u8(0xcf); return be(v, 8);
        }
        if (v >= -32) return u8(v & 0xff);
        if (v >= -128) return u8(0xd0, v & 0xff);
        if (v >= -32768) { u8(0xd1); return be(v & 0xffff, 2); }
        if (v >= -(2 ** 31)) { u8(0xd2); return be(v >>> 0, 4); }
        u8(0xd3); return be(BigInt.asUintN(64, BigInt(v)), 8);
      }
      const f = new DataView(new ArrayBuffer(8)); f.setFloat64(0, v);
      return u8(0xcb, ...new Uint8Array(f.buffer));
    }
    if (typeof v === "string") {
      const b = te.encode(v), n = b.length;
      if (n < 32) u8(0xa0 | n); else if (n < 256) u8(0xd9, n); else if (n < 65536) { u8(0xda); be(n, 2); } else { u8(0xdb); be(n, 4); }
      for (const x of b) out.push(x);
      return;
    }
    if (v instanceof Uint8Array) {
      const n = v.length;
      if (n < 256) u8(0xc4, n); else if (n < 65536) { u8(0xc5); be(n, 2); } else { u8(0xc6); be(n, 4); }
      for (const x of v) out.push(x);
      return;
    }
    if (Array.isArray(v)) {
      const n = v.length;
      if (n < 16) u8(0x90 | n); else if (n < 65536) { u8(0xdc); be(n, 2); } else { u8(0xdd); be(n, 4); }
      v.forEach(put);
      return;
    }
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    const n = keys.length;
    if (n < 16) u8(0x80 | n); else if (n < 65536) { u8(0xde); be(n, 2); } else { u8(0xdf); be(n, 4); }
    for (const k of keys) { put(k); put(v[k]); }
  };
  put(v);
  return Uint8Array.from(out);
}

// decode reads one msgpack value from b at offset at; it returns [value, next offset].
// Integers beyond 2^53 come back as BigInt (server message ids are that big).
export function decode(b, at = 0) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const need = (n) => { if (at + n > b.length) throw new Error("msgpack: truncated"); };
  const big = (v) => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const read = (depth) => {
    if (depth > 64) throw new Error("msgpack: too deep");
    need(1);
    const t = b[at++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 256;
    if ((t & 0xf0) === 0x80) return map(t & 15, depth);
    if ((t & 0xf0) === 0x90) return arr(t & 15, depth);
    if ((t & 0xe0) === 0xa0) return str(t & 31);
    const n8 = () => { need(1); return b[at++]; };
    const n16 = () => { need(2); const v = dv.getUint16(at); at += 2; return v; };
    const n32 = () => { need(4); const v = dv.getUint32(at); at += 4; return v; };
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(n8());
      case 0xc5: return bin(n16());
      case 0xc6: return bin(n32());
      case 0xc7: { const n = n8(); need(n + 1); at += n + 1; return null; } // ext: skipped
      case 0xc8: { const n = n16(); need(n + 1); at += n + 1; return null; }
      case 0xc9: { const n = n32(); need(n + 1); at += n + 1; return null; }
      case 0xca: { need(4); const v = dv.getFloat32(at); at += 4; return v; }
      case 0xcb: { need(8); const v = dv.getFloat64(at); at += 8; return v; }
      case 0xcc: return n8();
      case 0xcd: return n16();
      case 0xce: return n32();
      case 0xcf: { need(8); const v = dv.getBigUint64(at); at += 8; return big(v); }
      case 0xd0: { need(1); const v = dv.getInt8(at); at += 1; return v; }
      case 0xd1: { need(2); const v = dv.getInt16(at); at += 2; return v; }
      case 0xd2: { need(4); const v = dv.getInt32(at); at += 4; return v; }
      case 0xd3: { need(8); const v = dv.getBigInt64(at); at += 8; return big(v); }
      case 0xd4: need(2); at += 2; return null;
      case 0xd5: need(3); at += 3; return null;
      case 0xd6: need(5); at += 5; return null;
      case 0xd7: need(9); at += 9; return null;
      case 0xd8: need(17); at += 17; return null;
      case 0xd9: return str(n8());
      case 0xda: return str(n16());
      case 0xdb: return str(n32());
      case 0xdc: return arr(n16(), depth);
      case 0xdd: return arr(n32(), depth);
      case 0xde: return map(n16(), depth);
      case 0xdf: return map(n32(), depth);
    }
    throw new Error("msgpack: bad type 0x" + t.toString(16));
  };
  const str = (n) => { need(n); const s = td.decode(b.subarray(at, at + n)); at += n; return s; };
  const bin = (n) => { need(n); const s = b.slice(at, at + n); at += n; return s; };
  const arr = (n, d) => { if (n > b.length - at) throw new Error("msgpack: truncated"); const a = []; for (let i = 0; i < n; i++) a.push(read(d + 1)); return a; };
  const map = (n, d) => {
    if (n > b.length - at) throw new Error("msgpack: truncated");
    const m = {};
    for (let i = 0; i < n; i++) { const k = read(d + 1); m[String(k)] = read(d + 1); }
    return m;
  };
  const v = read(0);
  return [v, at];
}

// ---- frames ----

export const T = { login: 1, loginAck: 2, ping: 3, pong: 4, send: 5, sendAck: 6, deliver: 7, deliverAck: 8,
  subscribe: 9, subAck: 10, unsubscribe: 11, unsubAck: 12, request: 13, response: 14, kick: 15, error: 16 };
export const Kind = { user: 1, group: 2, topic: 3, all: 4 };
export const Code = { ok: 9000, offline: 7000, unknownGroup: 3011, accountMismatch: 9100, tokenExpired: 9101, takenOver: 5003, kicked: 5004 };

// frame is a WebSocket message: the type byte, then the body map.
export function frame(type, body = {}) {
  const b = encode(body), f = new Uint8Array(b.length + 1);
  f[0] = type; f.set(b, 1);
  return f;
}

// parseFrame reads a WebSocket message back: {type, body}.
export function parseFrame(buf) {
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (b.length < 1) throw new Error("empty frame");
  const body = b.length > 1 ? decode(b, 1)[0] : {};
  return { type: b[0], body: body && typeof body === "object" && !Array.isArray(body) ? body : {} };
}

export const text = (b) => (b instanceof Uint8Array ? td.decode(b) : String(b ?? ""));

// idTime is when the server made message id i (a Number or a BigInt), unix
// ms: its bits 63-23 count milliseconds from 2025-01-01; 0 for no id.
export const idTime = (i) => (i ? Number(BigInt(i) >> 23n) + 1735689600000 : 0);

// message is a deliver map (a deliver frame's body, or a message of a
// history result) as the page shows it, for user me. Two keys mean
// something when absent (broker/wire/doc.go, "Keys derived when absent"):
// no ts is the time in the id, no u in a private message is me.
export function message(d, me) {
  return { id: String(d.i), from: d.f || 0, fromName: d.n || "", kind: d.k || 0,
    user: d.u || (d.k === Kind.user ? me : 0), name: d.t || "", body: text(d.b),
    time: Number(d.ts ?? idTime(d.i)), offline: !!d.o };
}

// ---- the client ----

// NativeClient is one user's connection: login, send with acks, deliveries
// (acknowledged after the handler ran), requests, keepalive, reconnect with
// backoff (token first, then the password), QoS 1 sends kept until acked.
export class NativeClient {
  constructor({ url, name, password = "", onMessage = () => {}, onState = () => {} }) {
    Object.assign(this, { url, name, password, onMessage, onState });
    this.token = "";
    this.state = "idle";
    this.nextId = BigInt(Date.now()) * 1000000n; // unique across page loads, as the SDK's nanoseconds
    this.nextReq = 0;
    this.sends = new Map();    // client id (string) -> {frame, resolve, reject}
    this.calls = new Map();    // request id -> {resolve, reject}
    this.seen = new Set();     // recent deliver ids, to drop repeats
    this.failures = 0;
    this.closed = false;
  }

  // connect resolves once logged in, or rejects with the refusal (no retry then).
  connect() {
    return new Promise((resolve, reject) => { this.waiting = { resolve, reject }; this.open(); });
  }

  open() {
    this.setState(this.info ? "reconnecting" : "connecting");
    let ws;
    try { ws = new WebSocket(this.url); } catch (e) { this.retry(String(e)); return; } // /ws takes no subprotocol
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const login = { n: this.name, v: "cim-web/1", k: 30 };
      if (this.info) login.u = this.info.id;
      if (this.token && !this.skipToken) login.t = this.token; else login.p = this.password;
      this.write(frame(T.login, login));
    };
    ws.onmessage = (ev) => {
      this.heard = Date.now();
      let f;
      try { f = parseFrame(ev.data); } catch (e) { console.warn("cim: bad frame", e); return; }
      this.handle(f);
    };
    ws.onclose = (ev) => { if (this.ws === ws) this.lost(ev.reason || "closed (" + ev.code + ")"); };
  }

  write(f) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(f); this.wrote = Date.now(); return true; }
    return false;
  }

  handle({ type, body }) {
    switch (type) {
      case T.loginAck: return this.loginAck(body);
      case T.ping: return this.write(frame(T.pong));
      case T.pong: return;
      case T.sendAck: {
        const s = this.sends.get(String(body.i));
        if (!s) return;
        this.sends.delete(String(body.i));
        s.resolve({ code: body.c || 0, msgId: body.s, time: body.ts, text: body.m || "" });
        return;
      }
      case T.deliver: {
        const id = String(body.i);
        if (!this.seen.has(id)) {
          this.seen.add(id);
          if (this.seen.size > 4096) this.seen.delete(this.seen.values().next().value);
          try {
            const m = message(body, this.info.id);
            if (!m.time) m.time = Date.now();
            this.onMessage(m);
          } catch (e) { console.error(e); }
        }
        if (body.q) this.write(frame(T.deliverAck, { i: body.i }));
        return;
      }
      case T.response: {
        const c = this.calls.get(body.i);
        if (!c) return;
        this.calls.delete(body.i);
        if ((body.c || 0) === Code.ok) c.resolve(body.r ?? {}); else c.reject(codeError(body.c, body.m));
        return;
      }
      case T.subAck: case T.unsubAck: {
        const c = this.calls.get(body.i);
        if (c) { this.calls.delete(body.i); c.resolve(body.c || []); }
        return;
      }
      case T.kick: case T.error:
        this.lastCode = body.c; this.lastText = body.m;
        if (body.c === Code.takenOver || body.c === Code.kicked) this.fail(codeError(body.c, body.m));
        return;
    }
  }

  loginAck(b) {
    if (b.c !== Code.ok) {
      if (this.token && !this.skipToken && this.password && (b.c === Code.accountMismatch || b.c === Code.tokenExpired)) {
        this.skipToken = true; // the token was refused: once more with the password
        return;                // the server closes; lost() reconnects at once
      }
      this.fail(codeError(b.c, b.m || "login refused"));
      return;
    }
    this.skipToken = false;
    this.failures = 0;
    this.token = b.t || this.token;
    this.info = { id: b.u, name: b.n || this.name, node: b.o || "", keepalive: (b.k || 30) * 1000 };
    this.heard = this.wrote = Date.now();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), Math.max(200, this.info.keepalive / 6));
    for (const [, s] of [...this.sends].sort((a, b) => (BigInt(a[0]) < BigInt(b[0]) ? -1 : 1))) this.write(s.frame);
    this.setState("ready");
    if (this.waiting) { this.waiting.resolve(this.info); this.waiting = null; }
  }

  tick() {
    const now = Date.now(), ka = this.info.keepalive;
    if (now - this.heard > ka) { this.ws.close(); this.lost("server silent"); return; }
    if (now - this.wrote > ka / 3) this.write(frame(T.ping));
  }

  lost(why) {
    clearInterval(this.timer);
    const ws = this.ws; this.ws = null;
    if (ws) { ws.onclose = null; try { ws.close(); } catch {} }
    for (const [, c] of this.calls) c.reject(new Error("connection lost"));
    this.calls.clear();
    if (this.closed) return;
    this.retry(why);
  }

  retry(why) {
    this.failures++;
    const base = this.skipToken ? 0 : Math.min(10000, 250 * 2 ** Math.min(this.failures - 1, 6));
    const wait = base / 2 + Math.random() * base / 2;
    this.setState("reconnecting", why);
    clearTimeout(this.again);
    this.again = setTimeout(() => { if (!this.closed) this.open(); }, wait);
  }

  fail(err) {
    this.closed = true;
    clearInterval(this.timer); clearTimeout(this.again);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    for (const [, s] of this.sends) s.reject(err);
    this.sends.clear();
    this.setState("failed", err.message);
    if (this.waiting) { this.waiting.reject(err); this.waiting = null; }
  }

  close() {
    this.closed = true;
    clearInterval(this.timer); clearTimeout(this.again);
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000); this.ws = null; }
    this.setState("closed");
  }

  setState(s, why = "") { this.state = s; this.onState(s, why); }

  // send a text to a target ({k, u?, t?}); resolves with the ack
  // ({code 9000 or 7000 stored for an offline receiver, msgId}); rejects on a refusal.
  send(target, body, delayMs = 0) {
    const id = ++this.nextId;
    const f = frame(T.send, { i: id, k: target.k, u: target.u, t: target.t, q: 1, d: delayMs || undefined, b: te.encode(body) });
    return new Promise((resolve, reject) => {
      this.sends.set(String(id), { frame: f, resolve: (a) => (a.code === Code.ok || a.code === Code.offline ? resolve(a) : reject(codeError(a.code, a.text))), reject });
      if (this.state === "ready") this.write(f); // else sent at the next login
    });
  }

  // call a request method; resolves with its result map.
  call(method, args) {
    if (this.state !== "ready") return Promise.reject(new Error("not connected"));
    const id = ++this.nextReq;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.write(frame(T.request, { i: id, m: method, a: args }));
      setTimeout(() => { if (this.calls.delete(id)) reject(new Error(method + ": no answer")); }, 15000);
    });
  }
}

export function codeError(code, msg) {
  const e = new Error((msg || "refused") + " (" + code + ")");
  e.code = code;
  return e;
}
