// Package web is cim's chat page: a few static files embedded in the
// binary (no CDN, no build step, works offline) that cim server serves at
// / on its HTTP port, next to the API the page talks to:
//
//	GET /                 index.html  login, conversations, online users, devices
//	GET /app.js           the page's logic (ES module)
//	GET /wire.js          the native protocol: msgpack, frames, a client with acks and reconnect
//	GET /mqtt.js          a small MQTT 3.1.1 client (watch device topics)
//	GET /style.css
//	GET /emoji.json       {":alias:": "emoji"}, the aliases cim chat renders
//
//	page ──POST /registerAccount──────────────▶ IM API (registers a new name)
//	page ══WebSocket /ws  (one native frame per binary message: type, msgpack body)══▶ broker
//	page ══WebSocket /mqtt (subprotocol mqtt: MQTT 3.1.1)════════════════════════════▶ broker
//
// Handler serves the files with their content types, gzip when the
// client accepts it (each file compressed once), and validators so a
// reload costs a 304.
package web
