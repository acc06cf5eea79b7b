// Run by TestWireJSAgainstGo: decodes the frames given as hex arguments
// with the page's wire.js and prints each as JSON (bigints as strings,
// bytes as their text), a deliver also as the page's message for user 9;
// then prints the hex of frames wire.js encodes.
import { parseFrame, frame, message, T, text } from "../static/wire.js";

const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => Uint8Array.from(s.match(/../g).map((x) => parseInt(x, 16)));
const plain = (v) => JSON.stringify(v, (k, x) => (typeof x === "bigint" ? x.toString() : x instanceof Uint8Array ? "bin:" + text(x) : x));

for (const a of process.argv.slice(2)) {
  const f = parseFrame(unhex(a));
  console.log("decoded " + plain(f));
  if (f.type === T.deliver) console.log("message " + plain(message(f.body, 9)));
}
const te = new TextEncoder();
console.log("encoded " + hex(frame(T.send, { i: 1700000000000000001n, k: 1, u: 2, q: 1, d: 1500, b: te.encode("hi 😄") })));
console.log("encoded " + hex(frame(T.deliverAck, { i: 18446744073709551615n })));
console.log("encoded " + hex(frame(T.request, { i: 7, m: "history", a: { k: 2, t: "ops", q: "Ünïcode", l: 50 } })));
console.log("encoded " + hex(frame(T.login, { n: "alice", p: "secret", v: "cim-web/1", k: 30 })));
