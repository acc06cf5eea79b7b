#!/usr/bin/env bash
# durable.sh: durable QoS 1 into offline persistent sessions, side by side.
#
# For each broker: start it with persistence on, connect one persistent QoS 1
# subscriber to bench/# and leave (its session stays, offline), then run
# `cim bench pub` with P QoS 1 publishers for DURATION and report msgs/s and
# the PUBACK latency percentiles. cim runs with --durability sync (fsync before
# PUBACK); NATS stores MQTT QoS 1 in JetStream (file store); Mosquitto keeps
# queues in memory and saves them to disk on its autosave interval, so its
# "persistence" is weaker than an ack after fsync.
#
# Usage: bench/durable.sh   (env: DURATION [10s] PUBS [10] INFLIGHT [100] ROUNDS [3] BROKERS)
set -uo pipefail
DURATION=${DURATION:-10s}
PUBS=${PUBS:-10}
INFLIGHT=${INFLIGHT:-100}
ROUNDS=${ROUNDS:-3}
BROKERS=${BROKERS:-"cim nats mosquitto"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/cim-durable.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; sleep 0.3; [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients nats-server >/dev/null; }
(cd "$ROOT" && go build -o "$TMP/cim" ./cmd/cim) || exit 1
PORT=22883

start() { # broker dir
	local b=$1 d=$2
	mkdir -p "$d"
	case $b in
	cim) "$TMP/cim" server --mqtt-addr 127.0.0.1:$PORT --native-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$d/data" --durability sync --log-level warn >"$d/log" 2>&1 & ;;
	nats)
		printf 'server_name: durable\nlisten: 127.0.0.1:-1\njetstream { store_dir: "%s/js" }\nmqtt { listen: 127.0.0.1:%s }\n' "$d" $PORT >"$d/nats.conf"
		/usr/sbin/nats-server -c "$d/nats.conf" >"$d/log" 2>&1 & ;;
	mosquitto)
		chmod 777 "$d"
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nmax_inflight_messages 0\n' $PORT "$d" >"$d/m.conf"
		/usr/sbin/mosquitto -c "$d/m.conf" >"$d/log" 2>&1 & ;;
	esac
	PID=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0; sleep 0.1; done
	echo "$b did not start" >&2; cat "$d/log" >&2; return 1
}

declare -A RATE P99
for r in $(seq "$ROUNDS"); do
	for b in $BROKERS; do
		d="$TMP/$b-$r"
		start "$b" "$d" || continue
		timeout 5 mosquitto_sub -h 127.0.0.1 -p $PORT -i "durable-sub" -c -q 1 -t 'bench/#' -W 1 >/dev/null 2>&1
		out=$("$TMP/cim" bench pub --addr 127.0.0.1:$PORT --pubs "$PUBS" --qos 1 --inflight "$INFLIGHT" --size 64 \
			--duration "$DURATION" --broker-pid "$PID" --progress none --json 2>"$d/bench.err")
		rate=$(echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(int(j.get("send_rate", j.get("rate", 0))))' 2>/dev/null)
		p99=$(echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); a=j.get("ack_latency") or {}; print(a.get("p99_us", "-"))' 2>/dev/null)
		echo "round $r $b: ${rate:-?} msgs/s acked, p99 ack ${p99:-?} µs" >&2
		RATE[$b]+="${rate:-0} "
		P99[$b]+="${p99:-0} "
		kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| broker | durable QoS 1 msgs/s (median of $ROUNDS) | p99 PUBACK µs |"
echo "|---|---|---|"
for b in $BROKERS; do
	echo "| $b | $(echo "${RATE[$b]:-}" | median) | $(echo "${P99[$b]:-}" | median) |"
done
