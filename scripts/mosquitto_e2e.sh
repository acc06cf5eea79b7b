#!/usr/bin/env bash
# mosquitto_e2e.sh BIN: end-to-end MQTT checks of `BIN server` with the
# Eclipse mosquitto command line clients (package mosquitto-clients).
#
# Starts one server on a free loopback port with a throwaway data dir, then,
# for MQTT 3.1.1 and 5, checks QoS 0/1/2 round trips, + and # wildcards ($SYS
# kept out of #), retained messages (set, replace, clear), a persistent
# session's offline queue, wills, message order and size and, for v5, that
# properties (user, content type, response topic, subscription identifier,
# expiry) reach the subscriber and that expired retained messages do not. Each check
# prints PASS or FAIL; the last line is "N passed, M failed"; the exit status
# is non-zero if anything failed.
#
# Every wait is bounded: clients run under `timeout`, and subscribers are
# known to be subscribed (their -d output says so) before anyone publishes.
set -u -o pipefail

BIN=${1:?usage: $0 path/to/cim}
WAIT=5 # seconds any one step may take

if [[ ! -x $BIN ]]; then
	echo "FAIL setup: $BIN is not an executable (make build)"
	echo "0 passed, 1 failed"
	exit 1
fi
[[ $BIN == /* ]] || BIN=$PWD/$BIN # the server runs from a temp dir

for tool in mosquitto_pub mosquitto_sub timeout; do
	if ! command -v "$tool" >/dev/null; then
		echo "FAIL setup: $tool not found (apt-get install mosquitto-clients)"
		echo "0 passed, 1 failed"
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cim-e2e.XXXXXX")
server_pid=
bg_pids=()
declare -A sub_pids # subscriber name -> pid
got=                # set by sub_wait

cleanup() {
	local pid
	for pid in "${bg_pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	if [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; then
		# Give it the chance to shut down cleanly, then insist.
		for _ in $(seq 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$server_pid" 2>/dev/null
	fi
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}
# fail NAME [DETAIL...]: DETAIL lines are indented under the FAIL line.
fail() {
	echo "FAIL $1"
	shift
	local line
	for line in "$@"; do
		sed 's/^/    /' <<<"$line"
	done
	failed=$((failed + 1))
}
skip() { echo "SKIP $1"; }

# free_port prints a loopback TCP port nobody listens on right now.
free_port() {
	if command -v python3 >/dev/null; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
		return
	fi
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	return 1
}

# start_server picks a port and starts the server, retrying if another
# process took the port first; it returns once the port accepts.
start_server() {
	local try data_flag=()
	if "$BIN" server -h 2>&1 | grep -q -- '-data-dir'; then
		data_flag=(--data-dir "$tmp/data")
	fi
	for try in 1 2 3; do
		PORT=$(free_port) || return 1
		# Run from the temp dir so nothing lands in the caller's tree.
		(cd "$tmp" && exec "$BIN" server --mqtt-addr "127.0.0.1:$PORT" --native-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "${data_flag[@]}") >"$tmp/server.log" 2>&1 &
		server_pid=$!
		for _ in $(seq $((WAIT * 20))); do
			if ! kill -0 "$server_pid" 2>/dev/null; then
				break # exited: port taken, or worse; see the log
			fi
			if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
				return 0
			fi
			sleep 0.05
		done
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
		server_pid=
		echo "server did not come up on port $PORT (try $try):"
		tail -n 20 "$tmp/server.log" | sed 's/^/    /'
	done
	return 1
}

# mosquitto_sub writes its -d log with stdio: line-buffer it so that
# "Subscribed" shows up in the output file as it happens. Without stdbuf
# (not Linux) subscribers get a fixed second instead.
linebuf=()
if command -v stdbuf >/dev/null; then
	linebuf=(stdbuf -oL)
fi

# Prefix of output lines that carry a message; the -d debug lines around
# them never start with it.
MARK='=> '
FORMAT_DEFAULT="$MARK%t|%q|%r|%p"

# sub NAME VERSION [mosquitto_sub args...]: starts a subscriber in the
# background and returns once it is subscribed. Its messages, one per line
# in FORMAT (default topic|qos|retain|payload), are read with sub_wait.
sub() {
	local name=$1 version=$2
	shift 2
	local out="$tmp/$name.out"
	# Line-buffered: block-buffered output would hide 'Subscribed' until exit.
	timeout "$WAIT" "${linebuf[@]}" mosquitto_sub -d -h 127.0.0.1 -p "$PORT" -V "$version" -i "e2e-$name-$$" \
		-F "${FORMAT:-$FORMAT_DEFAULT}" "$@" >"$out" 2>&1 &
	local pid=$!
	bg_pids+=("$pid")
	sub_pids[$name]=$pid
	if ((${#linebuf[@]} == 0)); then
		sleep 1
		return 0
	fi
	for _ in $(seq $((WAIT * 20))); do
		if grep -q '^Subscribed (mid' "$out" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			# Exited (say, -C 1 met by a retained message): look once more.
			grep -q '^Subscribed (mid' "$out" 2>/dev/null && return 0
			break
		fi
		sleep 0.05
	done
	fail "$name: subscriber never subscribed" "$(cat "$out")"
	return 1
}

# sub_wait NAME: waits (bounded by the subscriber's timeout) for subscriber
# NAME to exit and sets got to the messages it received, one per line. Not
# for $(...): a subshell cannot wait for the subscriber.
sub_wait() {
	local name=$1
	wait "${sub_pids[$name]}" 2>/dev/null
	got=$(grep "^$MARK" "$tmp/$name.out" | cut -c$((${#MARK} + 1))-)
}

# pub VERSION [mosquitto_pub args...]: publishes and waits for it to finish
# (for QoS > 0 that is after the broker acknowledged).
pub() {
	local version=$1
	shift
	if ! timeout "$WAIT" mosquitto_pub -h 127.0.0.1 -p "$PORT" -V "$version" "$@" 2>"$tmp/pub.err"; then
		echo "mosquitto_pub $* failed: $(cat "$tmp/pub.err")" >&2
		return 1
	fi
}

# expect NAME WANT GOT [SUB]: passes if GOT is exactly WANT; on failure
# shows the end of subscriber SUB's log.
expect() {
	if [[ $3 == "$2" ]]; then
		pass "$1"
	elif [[ -n ${4:-} ]]; then
		fail "$1" "want:" "$2" "got:" "$3" "subscriber $4:" "$(tail -n 12 "$tmp/$4.out")"
	else
		fail "$1" "want:" "$2" "got:" "$3"
	fi
}

# ---------------------------------------------------------------------------

check_qos() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2 q want
	for q in 0 1 2; do
		sub "$v-qos$q" "$v" -q "$q" -t "$p/qos$q" -C 3 || continue
		# -l: one connection, one message per line, in order.
		printf 'one\ntwo\nthree\n' | pub "$v" -q "$q" -t "$p/qos$q" -l
		want=$(printf '%s\n' "$p/qos$q|$q|0|one" "$p/qos$q|$q|0|two" "$p/qos$q|$q|0|three")
		sub_wait "$v-qos$q"
		expect "$v qos $q round trip" "$want" "$got" "$v-qos$q"
	done
	# Delivered at the lower of the publish and subscription QoS.
	sub "$v-down" "$v" -q 1 -t "$p/down" -C 1 || return
	pub "$v" -q 2 -t "$p/down" -m down
	sub_wait "$v-down"
	expect "$v qos 2 publish to qos 1 subscription arrives at qos 1" "$p/down|1|0|down" "$got" "$v-down"
}

# no_sys VERSION FILTER MARKER: FILTER, which would match $SYS/broker/...
# if $SYS were not special, gets nothing from $SYS. The broker's $SYS topics
# are retained, so a new subscriber would get them at once; MARKER, a topic
# FILTER matches, is published afterwards to bound the wait.
no_sys() {
	local v=$1 filter=$2 marker=$3 name="$1-nosys-$RANDOM"
	FORMAT="$MARK%t" sub "$name" "$v" -q 1 -t "$filter" || return
	pub "$v" -q 1 -t "$marker" -m end
	for _ in $(seq $((WAIT * 20))); do
		grep -q "^$MARK$marker\$" "$tmp/$name.out" 2>/dev/null && break
		sleep 0.05
	done
	kill "${sub_pids[$name]}" 2>/dev/null
	sub_wait "$name"
	if ! grep -qxF "$marker" <<<"$got"; then
		fail "$v $filter subscriber did not receive the marker" "$got" "subscriber:" "$(tail -n 12 "$tmp/$name.out")"
	elif grep -q '^\$' <<<"$got"; then
		fail "$v $filter must not match \$SYS topics" "$(grep '^\$' <<<"$got" | head -5)"
	else
		pass "$v $filter does not match \$SYS topics"
	fi
}

check_volume() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2 n=100 want
	# Many QoS 1 messages on one connection arrive once each, in order.
	FORMAT="$MARK%p" sub "$v-many" "$v" -q 1 -t "$p/many" -C "$n" || return
	seq "$n" | pub "$v" -q 1 -t "$p/many" -l
	sub_wait "$v-many"
	expect "$v $n QoS 1 messages arrive in order" "$(seq "$n")" "$got" "$v-many"

	# A payload that needs a three-byte remaining length.
	head -c 75000 /dev/urandom | base64 -w0 >"$tmp/big"
	FORMAT="$MARK%p" sub "$v-big" "$v" -q 1 -t "$p/big" -C 1 || return
	pub "$v" -q 1 -t "$p/big" -f "$tmp/big"
	sub_wait "$v-big"
	if [[ $got == "$(<"$tmp/big")" ]]; then
		pass "$v 100 KB payload round trip"
	else
		fail "$v 100 KB payload round trip" "sent $(wc -c <"$tmp/big") bytes, got ${#got}"
	fi
}

check_wildcards() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2 t want out
	sub "$v-plus" "$v" -q 1 -t "$p/w/+/temp" -C 2 || return
	# Non-matching topics go first: if one leaked it would take a slot.
	for t in "$p/w/a/b/temp" "$p/w/temp" "$p/w/a/temp" "$p/w/b/temp"; do
		pub "$v" -q 1 -t "$t" -m "${t#"$p"/}"
	done
	want=$(printf '%s\n' "$p/w/a/temp|1|0|w/a/temp" "$p/w/b/temp|1|0|w/b/temp")
	sub_wait "$v-plus"
	expect "$v + matches exactly one level" "$want" "$got" "$v-plus"

	sub "$v-hash" "$v" -q 1 -t "$p/h/#" -C 3 || return
	for t in "$p/hx" "$p/other/h" "$p/h" "$p/h/a" "$p/h/a/b/c"; do
		pub "$v" -q 1 -t "$t" -m "${t#"$p"/}"
	done
	want=$(printf '%s\n' "$p/h|1|0|h" "$p/h/a|1|0|h/a" "$p/h/a/b/c|1|0|h/a/b/c")
	sub_wait "$v-hash"
	expect "$v # matches the parent and every level below" "$want" "$got" "$v-hash"

	# Wildcards at the first level must not match $SYS topics [MQTT-4.7.2-1].
	no_sys "$v" '#' "$p/marker"
	no_sys "$v" '+/broker/+' "${p//\//-}/broker/marker"
	# ...while subscribing to $SYS explicitly does (else the check above
	# proves nothing).
	FORMAT="$MARK%t" sub "$v-sys" "$v" -t '$SYS/#' -C 1 || return
	sub_wait "$v-sys"
	out=$got
	if [[ $out == '$SYS/'* ]]; then
		pass "$v \$SYS/# receives \$SYS topics"
	else
		fail "$v \$SYS/# receives \$SYS topics" "got: $out"
	fi
}

check_retained() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2 want
	pub "$v" -q 1 -r -t "$p/r" -m first
	sub "$v-late1" "$v" -q 1 -t "$p/r" -C 1 || return
	sub_wait "$v-late1"
	expect "$v retained message reaches a late subscriber" "$p/r|1|1|first" "$got" "$v-late1"

	pub "$v" -q 1 -r -t "$p/r" -m second
	sub "$v-late2" "$v" -q 1 -t "$p/r" -C 1 || return
	sub_wait "$v-late2"
	expect "$v retained message is replaced" "$p/r|1|1|second" "$got" "$v-late2"

	# A live subscriber gets a retained publish with retain 0 [MQTT-3.3.1-9].
	sub "$v-live" "$v" -q 1 -t "$p/r" -C 2 || return
	pub "$v" -q 1 -r -t "$p/r" -m third
	want=$(printf '%s\n' "$p/r|1|1|second" "$p/r|1|0|third")
	sub_wait "$v-live"
	expect "$v live delivery of a retained publish clears the retain flag" "$want" "$got" "$v-live"

	# An empty retained payload clears it [MQTT-3.3.1-10]: a late subscriber
	# then gets only what is published after it subscribed.
	pub "$v" -q 1 -r -n -t "$p/r"
	sub "$v-late3" "$v" -q 1 -t "$p/r" -C 1 || return
	pub "$v" -q 1 -t "$p/r" -m after
	sub_wait "$v-late3"
	expect "$v empty retained payload clears the retained message" "$p/r|1|0|after" "$got" "$v-late3"

	# A wildcard subscription collects every matching retained message.
	pub "$v" -q 0 -r -t "$p/rw/a" -m A
	pub "$v" -q 1 -r -t "$p/rw/b" -m B
	pub "$v" -q 1 -t "$p/rw/c" -m not-retained
	sub "$v-rwild" "$v" -q 1 -t "$p/rw/+" -C 2 || return
	want=$(printf '%s\n' "$p/rw/a|0|1|A" "$p/rw/b|1|1|B")
	sub_wait "$v-rwild"
	expect "$v wildcard subscription receives all matching retained messages" "$want" "$(sort <<<"$got")" "$v-rwild"
}

check_session() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2 id="e2e-session-$1-$$" keep=()
	[[ $v == mqttv5 ]] && keep=(-x 300) # v5: the session outlives the connection only with an expiry
	# Subscribe with a persistent session (-c), then leave (-E: exit once subscribed).
	if ! timeout "$WAIT" mosquitto_sub -h 127.0.0.1 -p "$PORT" -V "$v" -i "$id" -c "${keep[@]}" -q 1 -t "$p/s" -E 2>"$tmp/session.err"; then
		fail "$v persistent session: first subscribe" "$(cat "$tmp/session.err")"
		return
	fi
	pub "$v" -q 1 -t "$p/s" -m queued1
	pub "$v" -q 1 -t "$p/s" -m queued2
	# Coming back to the session (no new SUBSCRIBE needed, but harmless).
	local out
	out=$(timeout "$WAIT" mosquitto_sub -h 127.0.0.1 -p "$PORT" -V "$v" -i "$id" -c "${keep[@]}" -q 1 -t "$p/s" \
		-C 2 -F '%t|%q|%r|%p' 2>&1)
	expect "$v persistent session gets QoS 1 messages published while offline" \
		"$(printf '%s\n' "$p/s|1|0|queued1" "$p/s|1|0|queued2")" "$out"
}

check_will() { # VERSION TOPIC_PREFIX
	local v=$1 p=$2
	sub "$v-will" "$v" -q 1 -t "$p/will" -C 1 || return
	# A client with a will that vanishes without DISCONNECT. Not under
	# timeout: it is killed below, and by cleanup if anything goes wrong.
	local out="$tmp/$v-dying.out"
	"${linebuf[@]}" mosquitto_sub -d -h 127.0.0.1 -p "$PORT" -V "$v" -t "$p/none" \
		--will-topic "$p/will" --will-payload gone --will-qos 1 >"$out" 2>&1 &
	local pid=$!
	bg_pids+=("$pid")
	for _ in $(seq $((WAIT * 20))); do
		grep -q '^Subscribed (mid' "$out" 2>/dev/null && break
		sleep 0.05
	done
	[[ ${#linebuf[@]} -gt 0 ]] || sleep 1
	{ kill -9 "$pid" && wait "$pid"; } 2>/dev/null
	sub_wait "$v-will"
	expect "$v will is published when a client drops without DISCONNECT" "$p/will|1|0|gone" "$got" "$v-will"
}

check_v5_properties() { # TOPIC_PREFIX
	local p=$1 v=mqttv5
	# %P and %C (user properties, content type) came with mosquitto 2.0.
	local tool_version
	tool_version=$(mosquitto_sub --help 2>&1 | sed -n 's/^mosquitto_sub version \([0-9][0-9]*\)\..*/\1/p')
	if [[ -z $tool_version || $tool_version -lt 2 ]]; then
		skip "mqttv5 user properties and content type (mosquitto_sub ${tool_version:-?} cannot print them)"
		return
	fi
	FORMAT="$MARK%t|%P|%C|%R|%p" sub "$v-props" "$v" -q 1 -t "$p/props" -C 1 || return
	pub "$v" -q 1 -t "$p/props" -m '{"t":21}' \
		-D publish user-property app cim -D publish user-property k 'v w' \
		-D publish content-type application/json -D publish response-topic "$p/reply"
	sub_wait "$v-props"
	expect "mqttv5 user properties, content type and response topic are forwarded" \
		"$p/props|app:cim k:v w|application/json|$p/reply|{\"t\":21}" "$got" "$v-props"

	# The subscription identifier comes back on each delivery; the message
	# expiry interval is forwarded, less the time spent in the broker.
	FORMAT="$MARK%S|%E|%p" sub "$v-subid" "$v" -q 1 -t "$p/subid" -C 1 -D subscribe subscription-identifier 7 || return
	pub "$v" -q 1 -t "$p/subid" -m x -D publish message-expiry-interval 60
	sub_wait "$v-subid"
	if [[ $got == "7|60|x" || $got == "7|59|x" ]]; then
		pass "mqttv5 subscription identifier and message expiry are delivered"
	else
		fail "mqttv5 subscription identifier and message expiry are delivered" "want: 7|60|x (or 7|59|x)" "got: $got"
	fi

	# A retained message whose expiry passed is not delivered
	# [MQTT-3.3.2-5]. Expiry is in whole seconds: this needs a sleep.
	pub "$v" -q 1 -r -t "$p/expire" -m stale -D publish message-expiry-interval 1
	sleep 2.2
	sub "$v-expire" "$v" -q 1 -t "$p/expire" -C 1 || return
	pub "$v" -q 1 -t "$p/expire" -m fresh
	sub_wait "$v-expire"
	expect "mqttv5 expired retained message is not delivered" "$p/expire|1|0|fresh" "$got" "$v-expire"
}

# ---------------------------------------------------------------------------

if ! start_server; then
	fail "server starts and accepts connections on a free port"
	echo "$passed passed, $failed failed"
	exit 1
fi
pass "server accepts connections on 127.0.0.1:$PORT"

run=$$-$RANDOM # topics are unique per run, in case the data dir is reused
for v in mqttv311 mqttv5; do
	p="e2e/$run/$v"
	check_qos "$v" "$p"
	check_volume "$v" "$p"
	check_wildcards "$v" "$p"
	check_retained "$v" "$p"
	check_session "$v" "$p"
	check_will "$v" "$p"
done
check_v5_properties "e2e/$run/mqttv5"

if ! kill -0 "$server_pid" 2>/dev/null; then
	fail "server still running after the checks" "$(tail -n 20 "$tmp/server.log")"
fi
if ((failed > 0)); then
	echo "server log (last 20 lines):"
	tail -n 20 "$tmp/server.log" | sed 's/^/    /'
fi
echo "$passed passed, $failed failed"
((failed == 0))
