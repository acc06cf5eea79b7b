#!/usr/bin/env bash
# compare.sh: run the same `cim bench` cases against cim and reference brokers
# (Mosquitto, NATS with MQTT, mochi-mqtt v2.7.9) and print medians and ratios
# as a markdown table: the README's performance section.
#
# Each (round, case, broker) gets a freshly started broker, so CPU and RSS
# samples see only that run; the broker order rotates every round so no
# broker always runs first or last. Everything runs on $HOST (a loopback
# address, 127.0.0.1 by default), each broker on its own port, and every
# process started here is killed on exit.
#
# Usage: bench/compare.sh            (from the repository root or anywhere)
# Environment knobs (defaults in brackets):
#   ROUNDS [3]  DURATION [10s]  WARMUP [1s]  CONNS [19000]
#   BROKERS ["cim mosquitto mochi nats"]  CASES ["fanin0 fanin1 fanout0 pairs0 conn"]
#   CIM_FLAGS [""] extra flags for `cim server`   KEEP [""] non-empty keeps the temp dir
#   HOST [127.0.0.1] loopback address the brokers listen on (several people
#   sharing a machine each take their own)
set -uo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-19000}
BROKERS=${BROKERS:-"cim mosquitto mochi nats"}
CASES=${CASES:-"fanin0 fanin1 fanout0 pairs0 conn"}
CIM_FLAGS=${CIM_FLAGS:-}
HOST=${HOST:-127.0.0.1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/cim-compare.XXXXXX)
PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && kill "$pid" 2>/dev/null
	done
	sleep 0.5
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -z "${KEEP:-}" ]; then rm -rf "$TMP"; else log "kept $TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Brokers and the generator hold ~20,000 sockets each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open files limit $(ulimit -n)"

dur_s() { # "10s" / "500ms" / "1m" -> whole seconds, rounded up
	local d=$1
	case $d in
	*ms) echo $(((${d%ms} + 999) / 1000)) ;;
	*s) echo "${d%s}" ;;
	*m) echo $((${d%m} * 60)) ;;
	*) echo "$d" ;;
	esac
}

# ---------------------------------------------------------------- setup ----

need_apt() { # install a Debian package if its binary is missing
	local bin=$1 pkg=$2
	[ -x "$bin" ] && return 0
	log "installing $pkg"
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
	else
		sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
	fi
}

log "building cim"
(cd "$ROOT" && go build -o bin/cim ./cmd/cim) || { log "cannot build cim"; exit 1; }
CIM=$ROOT/bin/cim

for b in $BROKERS; do
	case $b in
	mosquitto) need_apt /usr/sbin/mosquitto mosquitto ;;
	nats) need_apt /usr/sbin/nats-server nats-server ;;
	mochi)
		# A throwaway main outside the repository: mochi as a library with
		# its defaults, allow-all auth, one TCP listener.
		mkdir -p "$TMP/mochi"
		cat >"$TMP/mochi/main.go" <<'EOF'
package main

import (
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "listen address")
	flag.Parse()
	s := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		log.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		log.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = s.Close()
}
EOF
		cat >"$TMP/mochi/go.mod" <<'EOF'
module mochiref

go 1.22

require github.com/mochi-mqtt/server/v2 v2.7.9
EOF
		# The repository's go.sum already lists mochi and its dependencies.
		cp "$ROOT/go.sum" "$TMP/mochi/go.sum"
		log "building mochi-mqtt v2.7.9 reference in $TMP/mochi"
		if ! (cd "$TMP/mochi" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 && go build -o mochi .); then
			log "cannot build mochi; skipping it"
			BROKERS=$(echo "$BROKERS" | sed 's/mochi//')
		fi
		;;
	esac
done

PORT_cim=21883
PORT_mosquitto=21884
PORT_nats=21885
PORT_mochi=21886

# start_broker NAME -> sets BPID, returns non-zero if it did not come up.
start_broker() {
	local name=$1 port var="PORT_$1"
	port=${!var}
	local dir="$TMP/run-$name"
	rm -rf "$dir" && mkdir -p "$dir"
	case $name in
	cim)
		# shellcheck disable=SC2086
		"$CIM" server --mqtt-addr "$HOST:$port" --native-addr "$HOST:0" --http-addr "$HOST:0" --data-dir "$dir/data" $CIM_FLAGS >"$dir/log" 2>&1 &
		;;
	mosquitto)
		printf 'listener %d %s\nallow_anonymous true\n' "$port" "$HOST" >"$dir/mosquitto.conf"
		/usr/sbin/mosquitto -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
		;;
	nats)
		# MQTT in NATS needs JetStream, and JetStream needs a server name.
		cat >"$dir/nats.conf" <<EOF
server_name: cimbench
listen: $HOST:$((port + 3000))
jetstream { store_dir: "$dir/js" }
mqtt { listen: $HOST:$port }
EOF
		/usr/sbin/nats-server -c "$dir/nats.conf" >"$dir/log" 2>&1 &
		;;
	mochi)
		"$TMP/mochi/mochi" --addr "$HOST:$port" >"$dir/log" 2>&1 &
		;;
	esac
	BPID=$!
	PIDS+=("$BPID")
	local i
	for i in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
			return 0
		fi
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	log "$name did not start: $(tail -3 "$dir/log" 2>/dev/null)"
	stop_broker
	return 1
}

stop_broker() {
	kill "$BPID" 2>/dev/null
	local i
	for i in $(seq 1 50); do
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$BPID" 2>/dev/null
	wait "$BPID" 2>/dev/null
}

case_args() {
	case $1 in
	fanin0) echo "fanin --pubs 10 --subs 1 --qos 0 --size 64 --duration $DURATION --warmup $WARMUP" ;;
	fanin1) echo "fanin --pubs 10 --subs 1 --qos 1 --size 64 --duration $DURATION --warmup $WARMUP" ;;
	fanout0) echo "fanout --subs 100 --qos 0 --size 64 --duration $DURATION --warmup $WARMUP" ;;
	pairs0) echo "pairs --pairs 100 --qos 0 --size 64 --duration $DURATION --warmup $WARMUP" ;;
	conn) echo "conn --count $CONNS --workers 2 --duration 3s" ;;
	esac
}

# json_num FILE KEY: the number after "KEY": in a one-line JSON report.
json_num() { grep -o "\"$2\":[-0-9.eE+]*" "$1" 2>/dev/null | head -1 | cut -d: -f2; }

# ------------------------------------------------------------------ run ----

read -r -a BLIST <<<"$BROKERS"
N=${#BLIST[@]}
RESULTS=$TMP/results
mkdir -p "$RESULTS"
limit=$(($(dur_s "$DURATION") + $(dur_s "$WARMUP") + 90))

for round in $(seq 1 "$ROUNDS"); do
	for c in $CASES; do
		for k in $(seq 0 $((N - 1))); do
			b=${BLIST[$(((k + round - 1) % N))]}
			start_broker "$b" || continue
			pv="PORT_$b"
			out="$RESULTS/$c.$b.$round.json"
			log "round $round: $c on $b"
			# In the background plus wait, so a signal to this script is
			# handled at once rather than after the run.
			# shellcheck disable=SC2046
			timeout --kill-after=5 "$limit" "$CIM" bench $(case_args "$c") \
				--addr "$HOST:${!pv}" --broker-pid "$BPID" \
				--json --progress none >"$out" 2>"$out.err" &
			GEN=$!
			PIDS+=("$GEN")
			wait "$GEN"
			rc=$?
			[ $rc -ne 0 ] && log "  exit $rc: $(tail -2 "$out.err" | tr '\n' ' ')"
			log "  $(json_num "$out" rate) msgs/s, $(json_num "$out" connect_rate) conns/s"
			stop_broker
		done
	done
done

# --------------------------------------------------------------- report ----

median() { # numbers on stdin -> median (middle, or mean of the two middles)
	sort -g | awk '{v[NR]=$1} END {if (NR==0) exit; if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

metric() { # metric CASE BROKER KEY -> median over rounds, or empty
	local c=$1 b=$2 key=$3 r
	for r in $(seq 1 "$ROUNDS"); do
		json_num "$RESULTS/$c.$b.$r.json" "$key"
	done | grep -v '^$' | median
}

fmt() { # human number: fmt VALUE KIND
	[ -z "$1" ] && { echo "-"; return; }
	case $2 in
	rate) awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.0fk", v/1000; else printf "%.0f", v }' ;;
	us) awk -v v="$1" 'BEGIN { printf "%.1f µs", v }' ;;
	bytes) awk -v v="$1" 'BEGIN { if (v >= 1024) printf "%.1f KB", v/1024; else printf "%.0f B", v }' ;;
	esac
}

ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a/b; else print "-" }' || echo "-"; }

title() {
	case $1 in
	cim) echo "cim $("$CIM" version 2>/dev/null | awk '{print $2}')" ;;
	mosquitto) echo "Mosquitto $(/usr/sbin/mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')" ;;
	nats) echo "NATS $(/usr/sbin/nats-server --version 2>/dev/null | awk '{print $2}' | tr -d v)" ;;
	mochi) echo "mochi v2.7.9" ;;
	esac
}

ROWS=(
	"fanin0|rate|rate|fan-in QoS 0 (10→1), msgs/s"
	"fanin1|rate|rate|fan-in QoS 1 (10→1), msgs/s"
	"fanout0|rate|rate|fan-out QoS 0 (1→100), deliveries/s"
	"pairs0|rate|rate|pairs QoS 0 (100), msgs/s"
	"fanin0|cpu_per_msg_us|us|broker CPU per delivered msg, fan-in QoS 0 (lower is better)"
	"pairs0|cpu_per_msg_us|us|broker CPU per delivered msg, pairs QoS 0 (lower is better)"
	"fanin0|tool_cpu_per_msg_us|us|load tool (cim bench) CPU per delivered msg, fan-in QoS 0"
	"pairs0|tool_cpu_per_msg_us|us|load tool (cim bench) CPU per delivered msg, pairs QoS 0"
	"conn|rss_per_conn_bytes|bytes|RSS per idle connection at $CONNS (lower is better)"
	"conn|connect_rate|rate|connect rate to $CONNS, conns/s"
	"conn|cpu_per_connect_us|us|broker CPU per connection accepted (lower is better)"
)

echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GB RAM, Linux $(uname -r), $(go version | awk '{print $3}')"
echo "Method: cim bench, 64 B payloads, $DURATION per case after $WARMUP warmup, medians of $ROUNDS rounds, brokers alternated, fresh broker per run."
echo
ref=()
for b in "${BLIST[@]}"; do [ "$b" != cim ] && ref+=("$b"); done
hdr="| case |"
sep="|---|"
for b in "${BLIST[@]}"; do hdr+=" $(title "$b") |"; sep+="---|"; done
if [[ " ${BLIST[*]} " == *" cim "* ]]; then
	for b in "${ref[@]}"; do hdr+=" cim / $(title "$b" | awk '{print $1}') |"; sep+="---|"; done
fi
echo "$hdr"
echo "$sep"
for row in "${ROWS[@]}"; do
	IFS='|' read -r c key kind label <<<"$row"
	[[ " $CASES " == *" $c "* ]] || continue
	line="| $label |"
	declare -A val=()
	for b in "${BLIST[@]}"; do
		val[$b]=$(metric "$c" "$b" "$key")
		line+=" $(fmt "${val[$b]}" "$kind") |"
	done
	if [[ " ${BLIST[*]} " == *" cim "* ]]; then
		for b in "${ref[@]}"; do
			# The tool's own cost is not compared across brokers.
			if [[ $key == tool_* ]]; then line+=" - |"; else line+=" $(ratio "${val[cim]}" "${val[$b]}") |"; fi
		done
	fi
	echo "$line"
	unset val
done

# The load tool must not be the bottleneck: its CPU per message against the
# broker's, same run, median of the per-run ratios.
tool_ratio() { # CASE BROKER -> median of tool/broker CPU per message
	local c=$1 b=$2 r t u
	for r in $(seq 1 "$ROUNDS"); do
		t=$(json_num "$RESULTS/$c.$b.$r.json" tool_cpu_per_msg_us)
		u=$(json_num "$RESULTS/$c.$b.$r.json" cpu_per_msg_us)
		[ -n "$t" ] && [ -n "$u" ] && awk -v t="$t" -v u="$u" 'BEGIN { if (u > 0) print t/u }'
	done | median
}
if [[ " $CASES " == *" fanin0 "* || " $CASES " == *" pairs0 "* ]]; then
	echo
	hdr="| load tool CPU / broker CPU per message (≤ 1: the tool is not the limit) |"
	sep="|---|"
	for b in "${BLIST[@]}"; do hdr+=" $(title "$b") |"; sep+="---|"; done
	echo "$hdr"
	echo "$sep"
	for c in fanin0 pairs0; do
		[[ " $CASES " == *" $c "* ]] || continue
		line="| $c |"
		for b in "${BLIST[@]}"; do
			v=$(tool_ratio "$c" "$b")
			if [ -n "$v" ]; then line+=" $(awk -v v="$v" 'BEGIN { printf "%.2f×", v }') |"; else line+=" - |"; fi
		done
		echo "$line"
	done
fi
