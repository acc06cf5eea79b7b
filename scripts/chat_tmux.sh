#!/usr/bin/env bash
# chat_tmux.sh: cim chat on a terminal (tmux), against a real cim server:
# the prompt and a half-typed line survive incoming messages, line editing
# and input history work, messages are coloured, Ctrl-D quits with 0.
# Another user in line mode talks to it. Usage: scripts/chat_tmux.sh [path/to/cim]
set -uo pipefail

BIN=${1:-bin/cim}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install -y tmux)"; exit 1; }
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }
tmp=$(mktemp -d /tmp/cim-tmux.XXXXXX)
sess=cimchat$$
pids=()
cleanup() {
	exec 9>&- 2>/dev/null
	tmux -L "$sess" kill-server 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
API=http://127.0.0.1:$HTTP
"$BIN" server --memory --mqtt-addr 127.0.0.1:0 --native-addr 127.0.0.1:0 --http-addr "127.0.0.1:$HTTP" \
	--log-level warn >"$tmp/server.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
pane() { tmux -L "$sess" capture-pane -t "$sess" -p "$@"; }
keys() { tmux -L "$sess" send-keys -t "$sess" "$@"; }
# poll CMD until it succeeds (10 s)
until_ok() {
	for _ in $(seq 200); do eval "$1" && return 0; sleep 0.05; done
	return 1
}
check() { # check WHAT CONDITION
	if until_ok "$2"; then ok "$1"; else bad "$1"; echo "  screen:"; pane | sed 's/^/    /'; fi
}

# alice on a terminal (a 100x20 tmux pane); EXIT= shows her exit status
tmux -L "$sess" new-session -d -s "$sess" -x 100 -y 20 \
	"TERM=xterm-256color '$BIN' chat --api '$API' --user alice --log-dir '$tmp/logs'; echo EXIT=\$?; sleep 60"
check "alice logs in on a terminal" 'pane | grep -q "logged in as alice"'
check "the prompt is shown" 'pane | grep -q "^alice> *$"'

# bob in line mode
mkfifo "$tmp/bob.in"
"$BIN" chat --api "$API" --user bob --no-log <"$tmp/bob.in" >"$tmp/bob.out" 2>&1 &
pids+=("$!")
exec 9>"$tmp/bob.in"
check "bob logs in" 'grep -q "logged in as bob" "$tmp/bob.out"'

keys "half typ"
check "alice has typed half a line" 'pane | grep -q "^alice> half typ$"'
echo "hello alice from bob" >&9
echo "bob again" >&9
check "bob's messages appear on alice's screen" 'pane | grep -q "bob\$ bob again"'
last=$(pane | grep -v '^$' | tail -1)
[ "$last" = "alice> half typ" ] && ok "the prompt and the half-typed line stay below the messages" || bad "last line is '$last'"
pane | grep -n . >"$tmp/screen"
m=$(grep -m1 "hello alice from bob" "$tmp/screen" | cut -d: -f1)
p=$(grep "^[0-9]*:alice> half typ" "$tmp/screen" | cut -d: -f1)
[ -n "$m" ] && [ -n "$p" ] && [ "$m" -lt "$p" ] && ok "messages are printed above the prompt" || bad "message line $m, prompt line $p"
tmux -L "$sess" capture-pane -t "$sess" -p -e | grep "bob again" | grep -q $'\e\[' && ok "messages are coloured on a terminal" || bad "no colour"

keys "ed" Enter
check "the finished line is sent" 'grep -q "alice\$ half typed$" "$tmp/bob.out"'
check "alice's own message is shown as a message" 'pane | grep -q "alice\$ half typed"'

keys "hellx" BSpace "o" Enter
check "line editing (backspace)" 'grep -q "alice\$ hello$" "$tmp/bob.out"'
keys Up Enter
check "input history (up arrow)" '[ "$(grep -c "alice\$ hello$" "$tmp/bob.out")" = 2 ]'

keys ":olu" Enter
check ":olu on a terminal" 'pane | grep -q "\* 2 online"'
keys ":q invoice" Enter
check ":q shows a result line" 'pane | grep -q "messages with \"invoice\""'

keys C-d
check "Ctrl-D quits with exit 0" 'pane | grep -q "^EXIT=0"'

echo "chat_tmux: $pass passed, $fail failed"
[ "$fail" = 0 ]
