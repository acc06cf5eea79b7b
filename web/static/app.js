// The cim chat page: log in (registering a new name), chat with everyone,
// privately and in groups over the native protocol at /ws, search the
// history, send delayed messages, and watch MQTT topics through /mqtt.
import { NativeClient, Kind, Code, message } from "./wire.js";
import { MqttClient } from "./mqtt.js";

const $ = (id) => document.getElementById(id);
const h = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  for (const k of kids) if (k != null) e.append(k);
  return e;
};
const pad = (n) => String(n).padStart(2, "0");
const stamp = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
const wsURL = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

// ---- emoji: the same aliases as cim chat (emoji.json, loaded once) ----
let emoji = null;
fetch("emoji.json").then((r) => r.json()).then((m) => { emoji = m; render(); }).catch(() => {});
const emojify = (s) => (emoji ? s.replace(/:[^:\s]+:/g, (a) => emoji[a] ?? a) : s);

// ---- state ----
const st = { client: null, me: null, convs: new Map(), current: "all", names: new Map(), online: [] };

function conv(key, title, target) {
  let c = st.convs.get(key);
  if (!c) { c = { key, title, target, msgs: new Map(), unread: 0, loaded: false }; st.convs.set(key, c); }
  if (title && c.title !== title && !key.startsWith("g:")) c.title = title;
  return c;
}
const everyone = () => conv("all", "Everyone", { k: Kind.all });
const privateConv = (id) => conv("u:" + id, st.names.get(id) || "user " + id, { k: Kind.user, u: id });
const groupConv = (name) => conv("g:" + name, "@" + name, { k: Kind.group, t: name });

// convOf is the conversation of a delivered or stored message.
function convOf(m) {
  switch (m.kind) {
    case Kind.user: return privateConv(m.from === st.me.id ? m.user : m.from);
    case Kind.group: return groupConv(m.name);
    case Kind.all: return everyone();
  }
  return null;
}

function add(c, m) {
  const old = c.msgs.get(m.id);
  const had = !!old;
  // the history's copy of a message does not say it waited offline: keep the mark
  c.msgs.set(m.id, { ...old, ...m, offline: !!(old?.offline || m.offline) });
  if (!had && c.key !== st.current && m.from !== st.me.id && !m.history) c.unread++;
}

// ---- login ----
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim(), password = $("password").value;
  $("login-error").textContent = "";
  try {
    const r = await fetch("registerAccount", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ userName: name, password }) });
    const env = await r.json();
    if (String(env.code) !== "9000") throw new Error(env.message + " (" + env.code + ")");
    await start(name, password, "");
  } catch (e) {
    $("login-error").textContent = e.code === Code.accountMismatch ? "Wrong password for " + name : String(e.message || e);
  }
});

async function start(name, password, token) {
  const c = new NativeClient({ url: wsURL("/ws"), name, password, onMessage: received, onState: showState });
  c.token = token;
  st.client = c;
  st.me = await c.connect();
  st.names.set(st.me.id, st.me.name);
  sessionStorage.setItem("cim", JSON.stringify({ name, token: c.token }));
  $("login").hidden = true; $("app").hidden = false;
  $("me").textContent = `${st.me.name} (user ${st.me.id})`;
  everyone();
  await Promise.all([loadGroups(), refreshOnline(), open(st.current)]);
  clearInterval(st.onlineTimer);
  st.onlineTimer = setInterval(refreshOnline, 10000); // presence is polled
  startMqtt();
  $("text").focus();
}

function showState(s, why) {
  $("status").className = "status " + s;
  $("status").textContent = s;
  const b = $("banner");
  if (s === "reconnecting") { b.hidden = false; b.textContent = "Connection lost (" + (why || "") + "): reconnecting… messages you send now go out once connected."; }
  else if (s === "failed") { b.hidden = false; b.textContent = "Disconnected for good: " + why + ". Log in again."; }
  else b.hidden = true;
  if (s === "ready" && st.me) { sessionStorage.setItem("cim", JSON.stringify({ name: st.me.name, token: st.client.token })); open(st.current); refreshOnline(); loadGroups(); }
}

$("logout").addEventListener("click", () => {
  st.client?.close(); st.mqtt?.close();
  sessionStorage.removeItem("cim");
  location.reload();
});

// ---- messages ----
function received(m) {
  st.names.set(m.from, m.fromName);
  if (m.from && !st.online.some((u) => u.i === m.from)) refreshOnline();
  if (m.kind === Kind.topic) { topic(m.name, m.body, m.time, m.fromName); return; }
  const c = convOf(m);
  if (!c) return;
  add(c, m);
  render();
}

async function open(key) {
  st.current = key;
  const c = st.convs.get(key) || everyone();
  c.unread = 0;
  render();
  if (!st.client || st.client.state !== "ready") return;
  try {
    const r = await st.client.call("history", { ...c.target, l: 50 });
    for (const d of r.m || []) add(c, { ...fromDeliver(d), history: true });
    c.loaded = true;
    render();
  } catch (e) { note(c, "history: " + e.message); }
}

const fromDeliver = (d) => message(d, st.me.id);

function note(c, text) { add(c, { id: "note:" + Math.random(), from: 0, fromName: "", body: text, time: Date.now(), note: true, history: true }); render(); }

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value, delay = parseFloat($("delay").value) || 0;
  if (!text.trim()) return;
  const c = st.convs.get(st.current);
  $("text").value = "";
  const tmp = "pending:" + Math.random();
  const mine = { id: tmp, from: st.me.id, fromName: st.me.name, body: text, time: Date.now(), pending: true, delay };
  if (!delay) { add(c, mine); render(); }
  try {
    const ack = await st.client.send(c.target, text, Math.round(delay * 1000));
    if (delay) { note(c, `delayed message accepted: the server sends it at ${stamp(Number(ack.time || Date.now()) + delay * 1000)}, even if you leave`); $("delay").value = ""; return; }
    c.msgs.delete(tmp);
    add(c, { ...mine, id: String(ack.msgId), time: Number(ack.time || mine.time), pending: false, stored: ack.code === Code.offline });
  } catch (e) {
    c.msgs.delete(tmp);
    note(c, "not sent: " + e.message + (e.code === 3013 ? " — join the group first" : ""));
  }
  render();
});

// ---- rendering ----
function line(m, mark) {
  const who = m.fromName || (m.from ? st.names.get(m.from) || "user " + m.from : "mqtt");
  const body = emojify(m.body);
  const text = h("span", { class: "body" });
  if (mark) {
    const re = new RegExp(mark.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "giu");
    let at = 0;
    for (const x of body.matchAll(re)) { text.append(body.slice(at, x.index), h("mark", {}, x[0])); at = x.index + x[0].length; }
    text.append(body.slice(at));
  } else text.textContent = body;
  if (m.note) return h("li", { class: "note" }, h("span", { class: "ts" }, "[" + stamp(m.time) + "]"), text);
  return h("li", { class: m.from === st.me?.id ? "mine" : "", "data-id": m.id },
    h("span", { class: "ts" }, "[" + stamp(m.time) + "]"), h("span", { class: "who" }, who + "$"), text,
    m.offline ? h("span", { class: "tag" }, "offline") : null,
    m.pending ? h("span", { class: "tag" }, "sending") : null,
    m.stored ? h("span", { class: "tag" }, "stored: receiver offline") : null);
}

function render() {
  if (!st.me) return;
  const c = st.convs.get(st.current) || everyone();
  $("conv-title").textContent = c.title;
  const list = $("messages"), atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...[...c.msgs.values()].sort((a, b) => a.time - b.time).map((m) => line(m)));
  if (atEnd) list.scrollTop = list.scrollHeight;
  $("convs").replaceChildren(...[...st.convs.values()].map((x) =>
    h("li", { class: x.key === st.current ? "active" : "", onclick: () => open(x.key), "data-key": x.key },
      h("span", {}, x.title), x.unread ? h("span", { class: "badge" }, String(x.unread)) : null)));
  $("online").replaceChildren(...st.online.map((u) =>
    h("li", { onclick: () => { st.names.set(u.i, u.n); privateConv(u.i); open("u:" + u.i); } },
      h("span", {}, u.n + (u.i === st.me.id ? " (you)" : "")), h("span", { class: "ts" }, String(u.i)))));
}

async function refreshOnline() {
  try {
    const r = await st.client.call("online", { l: 200 });
    st.online = r.u || [];
    for (const u of st.online) st.names.set(u.i, u.n);
    render();
  } catch {}
}

async function loadGroups() {
  try { for (const g of (await st.client.call("group.mine")).g || []) groupConv(g.n); render(); } catch {}
}

// "@group" joins (or creates) a group; a name opens a private conversation
// (looked up through the API, so offline users are reachable too).
$("join-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const v = $("join").value.trim();
  if (!v) return;
  try {
    if (v.startsWith("@")) {
      const name = v.slice(1);
      try { await st.client.call("group.join", { n: name }); } catch (e) { if (e.code !== Code.unknownGroup) throw e; await st.client.call("group.create", { n: name }); }
      groupConv(name);
      open("g:" + name);
    } else {
      const r = await (await fetch("v1/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: v }) })).json();
      if (String(r.code) !== "9000") throw new Error("no user " + v);
      st.names.set(r.dataBody.id, r.dataBody.name);
      privateConv(r.dataBody.id);
      open("u:" + r.dataBody.id);
    }
    $("join").value = "";
  } catch (e) { note(st.convs.get(st.current), v + ": " + e.message); }
});

$("refresh-online").addEventListener("click", refreshOnline);

// ---- search ----
$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("search").value.trim();
  if (!q) return;
  try {
    const r = await st.client.call("history", { q, l: 50 });
    const hits = (r.m || []).map(fromDeliver).sort((a, b) => a.time - b.time);
    $("results-title").textContent = `${hits.length} messages with “${q}”`;
    $("results-list").replaceChildren(...hits.map((m) => {
      const li = line(m, q), c = convOf(m);
      if (c) li.addEventListener("click", () => { $("results").hidden = true; open(c.key); });
      return li;
    }));
    $("results").hidden = false;
  } catch (e) { $("results-title").textContent = "search: " + e.message; $("results-list").replaceChildren(); $("results").hidden = false; }
});
$("results-close").addEventListener("click", () => ($("results").hidden = true));

// ---- devices: MQTT topics through /mqtt ----
const topics = new Map();
function topic(name, payload, time, from) {
  let t = topics.get(name);
  if (!t) { t = { n: 0, row: h("tr", { "data-topic": name }) }; topics.set(name, t); $("topics").prepend(t.row); }
  t.n++;
  const value = typeof payload === "string" ? payload : new TextDecoder().decode(payload);
  t.row.replaceChildren(h("td", {}, name), h("td", {}, value.length > 200 ? value.slice(0, 200) + "…" : value), h("td", { class: "ts" }, stamp(time).slice(11)), h("td", {}, String(t.n)));
  t.row.title = from ? "from " + from : "";
  t.row.classList.remove("fresh"); void t.row.offsetWidth; t.row.classList.add("fresh");
}

function startMqtt() {
  st.mqtt?.close();
  const filter = localStorage.getItem("cim.filter") || $("filter").value;
  $("filter").value = filter;
  const m = new MqttClient({ url: wsURL("/mqtt"), clientId: "cim-web-" + st.me.name.replace(/[^\w-]/g, "_").slice(0, 20) + "-" + Math.random().toString(36).slice(2, 8),
    username: $("mqtt-user").value, password: $("mqtt-pass").value,
    onMessage: (p) => { if (!p.topic.startsWith("cim/")) topic(p.topic, p.payload, p.time, ""); },
    onState: (s, why) => { $("mqtt-status").className = "status " + s; $("mqtt-status").textContent = s + (why ? ": " + why : ""); } });
  m.subscribe(filter);
  m.connect();
  st.mqtt = m;
}

$("filter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = $("filter").value.trim();
  if (!f || !st.mqtt) return;
  for (const old of st.mqtt.filters) st.mqtt.unsubscribe(old);
  localStorage.setItem("cim.filter", f);
  topics.clear(); $("topics").replaceChildren();
  st.mqtt.subscribe(f);
});
$("mqtt-reconnect").addEventListener("click", startMqtt);
$("pub-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("pub-topic").value.trim();
  if (t && st.mqtt) st.mqtt.publish(t, $("pub-payload").value);
});

// ---- a reload keeps the login of this tab (its token) ----
const saved = JSON.parse(sessionStorage.getItem("cim") || "null");
if (saved?.token) start(saved.name, "", saved.token).catch(() => { sessionStorage.removeItem("cim"); $("login").hidden = false; });
st.readyAt = performance.now(); // the page works from here (measured by the browser test)
window.cim = st; // for the console (and the browser test)
