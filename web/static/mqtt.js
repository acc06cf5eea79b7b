// A small MQTT 3.1.1 client over WebSocket (/mqtt, subprotocol "mqtt"):
// enough to watch devices — CONNECT, SUBSCRIBE, receive PUBLISH at QoS 0/1,
// publish at QoS 0, keepalive pings, reconnect. Packets may span WebSocket
// messages, so input is buffered and cut by the remaining length.

const te = new TextEncoder(), td = new TextDecoder();

function remLen(n) {
  const out = [];
  do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 128; out.push(b); } while (n > 0);
  return out;
}
const u16 = (n) => [n >> 8, n & 255];
const mstr = (s) => { const b = te.encode(s); return [...u16(b.length), ...b]; };
const packet = (first, body) => Uint8Array.from([first, ...remLen(body.length), ...body]);

export class MqttClient {
  constructor({ url, clientId, username = "", password = "", keepalive = 30, onMessage = () => {}, onState = () => {} }) {
    Object.assign(this, { url, clientId, username, password, keepalive, onMessage, onState });
    this.filters = new Set();
    this.pid = 0;
    this.buf = new Uint8Array(0);
    this.failures = 0;
    this.closed = false;
  }

  connect() {
    this.onState("connecting");
    const ws = new WebSocket(this.url, ["mqtt"]);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      let flags = 0x02; // clean session
      const payload = [...mstr(this.clientId)];
      if (this.username) { flags |= 0x80; payload.push(...mstr(this.username)); }
      if (this.password) { flags |= 0x40; payload.push(...mstr(this.password)); }
      ws.send(packet(0x10, [...mstr("MQTT"), 4, flags, ...u16(this.keepalive), ...payload]));
    };
    ws.onmessage = (ev) => this.input(new Uint8Array(ev.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      clearInterval(this.timer);
      this.ws = null;
      if (this.closed) return;
      this.failures++;
      const wait = Math.min(10000, 250 * 2 ** Math.min(this.failures, 6));
      this.onState("reconnecting");
      this.again = setTimeout(() => this.connect(), wait / 2 + Math.random() * wait / 2);
    };
  }

  input(chunk) {
    const b = new Uint8Array(this.buf.length + chunk.length);
    b.set(this.buf); b.set(chunk, this.buf.length);
    let at = 0;
    for (;;) {
      let len = 0, mul = 1, i = at + 1, ok = false;
      for (; i < b.length && i < at + 5; i++) {
        len += (b[i] & 127) * mul; mul *= 128;
        if (!(b[i] & 128)) { ok = true; i++; break; }
      }
      if (!ok || i + len > b.length) break;
      this.packet(b[at], b.subarray(i, i + len));
      at = i + len;
    }
    this.buf = b.slice(at);
  }

  packet(first, body) {
    switch (first >> 4) {
      case 2: // CONNACK
        if (body[1] !== 0) { this.onState("refused", "CONNACK code " + body[1]); this.closed = true; this.ws.close(); return; }
        this.failures = 0;
        this.onState("ready");
        clearInterval(this.timer);
        this.timer = setInterval(() => this.send(packet(0xc0, [])), this.keepalive * 500);
        if (this.filters.size) this.sendSubscribe([...this.filters]);
        return;
      case 3: { // PUBLISH
        const qos = (first >> 1) & 3, tl = (body[0] << 8) | body[1];
        const topic = td.decode(body.subarray(2, 2 + tl));
        let at = 2 + tl;
        if (qos > 0) {
          const id = [body[at], body[at + 1]]; at += 2;
          this.send(packet(qos === 1 ? 0x40 : 0x50, id)); // PUBACK, or PUBREC for QoS 2
        }
        this.onMessage({ topic, payload: body.slice(at), retain: !!(first & 1), time: Date.now() });
        return;
      }
      case 6: this.send(packet(0x70, [body[0], body[1]])); return; // PUBREL -> PUBCOMP
      // SUBACK (9), PINGRESP (13), PUBACK etc.: nothing to do
    }
  }

  send(p) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(p); }

  sendSubscribe(filters) {
    const body = [...u16(++this.pid % 65536 || ++this.pid)];
    for (const f of filters) body.push(...mstr(f), 0);
    this.send(packet(0x82, body));
  }

  subscribe(filter) { this.filters.add(filter); this.sendSubscribe([filter]); }

  unsubscribe(filter) {
    this.filters.delete(filter);
    this.send(packet(0xa2, [...u16(++this.pid % 65536 || ++this.pid), ...mstr(filter)]));
  }

  publish(topic, payload) { this.send(packet(0x30, [...mstr(topic), ...te.encode(payload)])); }

  close() {
    this.closed = true;
    clearInterval(this.timer); clearTimeout(this.again);
    if (this.ws) { this.send(packet(0xe0, [])); this.ws.close(); this.ws = null; }
  }
}
