#!/usr/bin/env bash
# chat_e2e.sh: cim chat driven through pipes against a real `cim server`:
# two users chat to everyone, privately and in a group, :olu, an unknown
# command, :delay arriving after the sender quit, offline messages on
# login, the local log, and the exit codes for a wrong password, an
# unreachable API and bad flags. Also measures start-to-first-message.
# Usage: scripts/chat_e2e.sh [path/to/cim]     (run by make test)
set -uo pipefail

BIN=${1:-bin/cim}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }
tmp=$(mktemp -d /tmp/cim-chat.XXXXXX)
pids=()
cleanup() {
	for fd in 3 4 5 6 7; do eval "exec $fd>&-" 2>/dev/null; done
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
server=$!
pids+=("$server")
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# start NAME FD [flags...]: cim chat in line mode, commands through a fifo
# held open on FD, output in $tmp/NAME.out.
declare -A pid_of
start() {
	local name=$1 fd=$2
	shift 2
	rm -f "$tmp/$name.in" && mkfifo "$tmp/$name.in"
	# the other sessions' fifo ends are not inherited: each sees the end of its own input
	"$BIN" chat --api "$API" --user "$name" --log-dir "$tmp/logs" "$@" <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" \
		3>&- 4>&- 5>&- 6>&- 7>&- &
	pid_of[$name]=$!
	pids+=("$!")
	eval "exec $fd>\"$tmp/$name.in\""
}
say() { # say FD LINE
	echo "$2" >&"$1"
}
# wait_for NAME TEXT [SECONDS]: poll NAME's output for a line containing TEXT.
wait_for() {
	local name=$1 want=$2 secs=${3:-10}
	for _ in $(seq $((secs * 20))); do
		grep -qF -- "$want" "$tmp/$name.out" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "  $name's output:" && sed 's/^/    /' "$tmp/$name.out" "$tmp/$name.err"
	return 1
}
expect() { # expect NAME TEXT WHAT
	if wait_for "$1" "$2"; then ok "$3"; else bad "$3 (no line with '$2')"; fi
}
# quit FD NAME: end of input is :q!; the exit status must be 0.
quit() {
	eval "exec $1>&-"
	local p=${pid_of[$2]}
	wait "$p"
	local rc=$?
	if [ "$rc" = 0 ]; then ok "$2 quits at the end of its input (exit 0)"; else bad "$2 exit status $rc at the end of input"; fi
}

start alice 3 --password a-secret
start bob 4 --password b-secret
expect alice "* logged in as alice" "alice registers and logs in"
expect bob "* logged in as bob" "bob registers and logs in"

say 3 "hello everyone"
expect bob "alice\$ hello everyone" "a line goes to everyone"
if grep -qE '^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\] alice\$ hello everyone$' "$tmp/bob.out"; then
	ok "shown as [yyyy-MM-dd HH:mm:ss] sender\$ text, no colour through a pipe"
else
	bad "message format: $(grep hello "$tmp/bob.out")"
fi
say 4 "alice;;hi alice, privately"
expect alice "bob (private)\$ hi alice, privately" "name;;text is private"
alice_id=$(curl -s -X POST -H 'Content-Type: application/json' -d '{"name":"alice"}' "$API/v1/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dataBody"]["id"])')
say 4 "$alice_id;;by id"
expect alice "bob (private)\$ by id" "userId;;text is private"
if grep -q "hi alice, privately" "$tmp/bob.out"; then bad "a private message reached its sender"; else ok "a private message is not echoed to others"; fi

say 3 ":join ops"
expect alice "* created group ops" ":join creates a group"
say 4 ":join ops"
expect bob "* joined ops (2 members" ":join joins it"
say 3 ":g ops;;deploy at five"
expect bob "alice @ops\$ deploy at five" ":g group;;text reaches the group"
say 4 ":groups"
expect bob "  ops" ":groups lists it"

say 3 ":olu"
expect alice "* 2 online" ":olu counts the users online"
if wait_for alice " bob" && grep -qE '^  [0-9]+ +bob$' "$tmp/alice.out"; then ok ":olu lists id and name"; else bad ":olu lists id and name"; fi
say 3 ":nope"
expect alice "error: unknown command :nope" "an unknown command is an error"
expect alice ":delay text seconds" "... followed by the command list"
say 3 ":q deploy"
expect alice "* 1 messages with \"deploy\"" ":q searches the local log and the server"
expect alice "alice (to @ops)\$ *deploy* at five" ":q highlights the keyword"

# :delay is held by the server: it arrives after the sender quit.
say 3 ":delay bob;;delayed hello, the whole text 2"
expect alice "* delayed message" ":delay is accepted"
quit 3 alice
expect bob "alice (private)\$ delayed hello, the whole text" ":delay arrives after the sender quit"

# offline messages: bob quits, carol writes to him, bob logs in again.
quit 4 bob
# the server notices a closed connection a moment later
for _ in $(seq 200); do curl -s "$API/v1/online?prefix=bob" | grep -q '"users":\[\]' && break; sleep 0.05; done
start carol 5
expect carol "* logged in as carol" "carol logs in (no password)"
say 5 "bob;;while you were away"
expect carol "* bob is offline: the message is stored" "the sender is told the receiver is offline"
t0=$(date +%s%N)
start bob 6 --password b-secret
expect bob "carol (private, offline)\$ while you were away" "offline messages arrive at login, marked"
t1=$(date +%s%N)
echo "MEASURE cim chat start to first (offline) message: $(((t1 - t0) / 1000000)) ms (includes process start and 50 ms polling; shared machine)"
say 5 ":q!"
wait "${pid_of[carol]}" && ok ":q! quits with exit 0" || bad ":q! exit status"
quit 6 bob

# the local log: a file per user per day, zero-padded, no ping lines.
day=$(date +%Y-%m-%d)
if [ -f "$tmp/logs/bob/$day.log" ] && grep -q "carol (private, offline)\$ while you were away" "$tmp/logs/bob/$day.log"; then
	ok "local log logs/bob/$day.log"
else
	bad "local log: $(ls -R "$tmp/logs" 2>&1)"
fi
if grep -qi ping "$tmp/logs/bob/$day.log" "$tmp/logs/alice/$day.log"; then bad "ping lines in the log"; else ok "no ping lines in the log"; fi

# exit codes
"$BIN" chat --api "$API" --user alice --password wrong </dev/null >"$tmp/x.out" 2>"$tmp/x.err"
rc=$?
[ "$rc" = 3 ] && grep -q "wrong password" "$tmp/x.err" && ok "wrong password: exit 3 and says so" || bad "wrong password: exit $rc: $(cat "$tmp/x.err")"
"$BIN" chat --api http://127.0.0.1:1 --user alice --timeout 2s </dev/null >"$tmp/x.out" 2>"$tmp/x.err"
rc=$?
[ "$rc" = 4 ] && grep -q "unreachable" "$tmp/x.err" && ok "unreachable API: exit 4 and says so" || bad "unreachable API: exit $rc: $(cat "$tmp/x.err")"
"$BIN" chat --bogus </dev/null >/dev/null 2>"$tmp/x.err"
rc=$?
[ "$rc" = 2 ] && grep -q "bogus" "$tmp/x.err" && ok "a bad flag: exit 2" || bad "bad flag: exit $rc"
"$BIN" chat --api "$API" </dev/null >/dev/null 2>"$tmp/x.err"
rc=$?
[ "$rc" = 2 ] && grep -q -- "--user is required" "$tmp/x.err" && ok "no --user: exit 2" || bad "no --user: exit $rc"
"$BIN" chat --api "not a url" --user x </dev/null >/dev/null 2>"$tmp/x.err"
rc=$?
[ "$rc" = 2 ] && ok "a bad --api: exit 2" || bad "bad --api: exit $rc: $(cat "$tmp/x.err")"

echo "chat_e2e: $pass passed, $fail failed"
[ "$fail" = 0 ]
