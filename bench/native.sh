#!/usr/bin/env bash
# native.sh: cim's native protocol against MQTT on the same broker, same
# run: `cim bench --proto native` and `cim bench` (MQTT 3.1.1) on the same
# cases, each (round, case, protocol) against a freshly started broker, the
# protocol order alternating every round. Prints medians and native/MQTT
# ratios as markdown tables (the numbers of docs/bench.md).
#
# The broker is `cim server` (the native protocol registers its accounts
# on its HTTP API); SERVER_BIN names another build of it. It listens on
# 127.0.0.$IP_LAST (MQTT :1883, native :9000, HTTP API :8083, the ports
# `cim bench` assumes), so it does not collide with a broker on 127.0.0.1.
#
# Usage: bench/native.sh        (from anywhere)
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [5s]  WARMUP [1s]  CONNS [19000]  DURABLE_PUBS [10]
#   CASES ["fanin0 fanin1 fanin1p fanout0 pairs0 fanin0r fanout0r pairs0r conn durable"]
#   PROTOS ["mqtt native"]  DURABILITY [sync]  SERVER_BIN [built here]  IP_LAST [77]
#   KEEP [""] non-empty keeps the temp dir
set -uo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-19000}
DURABLE_PUBS=${DURABLE_PUBS:-10}
CASES=${CASES:-"fanin0 fanin1 fanin1p fanout0 pairs0 fanin0r fanout0r pairs0r conn durable"}
PROTOS=${PROTOS:-"mqtt native"}
DURABILITY=${DURABILITY:-sync}
IP=127.0.0.${IP_LAST:-77}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/cim-native.XXXXXX)
PIDS=()
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
	for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
	sleep 0.5
	for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ -z "${KEEP:-}" ]; then rm -rf "$TMP"; else log "kept $TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v python3 >/dev/null || { log "needs python3 (JSON)"; exit 1; }

log "building cim and the broker"
(cd "$ROOT" && go build -o "$TMP/cim" ./cmd/cim) || exit 1
CIM=$TMP/cim
SERVER_BIN=${SERVER_BIN:-$CIM}

BPID=
start_broker() { # -> BPID
	local dir=$TMP/run
	rm -rf "$dir" && mkdir -p "$dir"
	"$SERVER_BIN" server --mqtt-addr "$IP:1883" --native-addr "$IP:9000" --http-addr "$IP:8083" \
		--data-dir "$dir/data" --durability "$DURABILITY" --log-level warn >"$dir/out" 2>"$dir/log" &
	BPID=$!
	PIDS+=("$BPID")
	local i
	for i in $(seq 1 100); do
		curl -sf "http://$IP:8083/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	log "broker did not start: $(tail -3 "$dir/log")"
	return 1
}
stop_broker() {
	kill "$BPID" 2>/dev/null
	local i
	for i in $(seq 1 50); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$BPID" 2>/dev/null
	wait "$BPID" 2>/dev/null
}

common="--size 64 --duration $DURATION --warmup $WARMUP"
case_args() { # CASE PROTO ROUND
	local c=$1 p=$2 r=$3
	case $c in
	fanin0) echo "fanin --pubs 10 --subs 1 --qos 0 $common" ;;
	fanin1) echo "fanin --pubs 10 --subs 1 --qos 1 $common" ;;
	# QoS 1 with stored sessions on both sides: a native session is always
	# stored, an MQTT one only with --clean=false (fanin1 compares a stored
	# native subscriber with a clean MQTT one).
	fanin1p) echo "fanin --pubs 10 --subs 1 --qos 1 --clean=false $common" ;;
	fanout0) echo "fanout --subs 100 --qos 0 $common" ;;
	pairs0) echo "pairs --pairs 100 --qos 0 $common" ;;
	fanin0r) echo "fanin --pubs 10 --subs 1 --qos 0 --rate 5000 $common" ;;
	fanout0r) echo "fanout --subs 100 --qos 0 --rate 1000 $common" ;;
	pairs0r) echo "pairs --pairs 100 --qos 0 --rate 500 $common" ;;
	conn) echo "conn --count $CONNS --workers 2 --duration 3s" ;;
	durable)
		# QoS 1 into offline sessions: MQTT into one persistent session
		# subscribed to bench/# (made by durable_setup), native private
		# messages to users who never log in (registered by the run).
		if [ "$p" = native ]; then
			echo "pub --pubs $DURABLE_PUBS --qos 1 --inflight 100 --client-id-prefix dur$r --topic cim/u/offline-%i $common"
		else
			echo "pub --pubs $DURABLE_PUBS --qos 1 --inflight 100 --topic bench/durable/%i $common"
		fi
		;;
	esac
}
durable_setup() { # an MQTT persistent session on bench/#, left offline
	"$CIM" bench sub --addr "$IP:1883" --clean=false --qos 1 --topic 'bench/#' --client-id-prefix durable \
		--duration 200ms --progress none >/dev/null 2>&1
}

read -r -a PL <<<"$PROTOS"
RESULTS=$TMP/results
mkdir -p "$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
	for c in $CASES; do
		for k in $(seq 0 $((${#PL[@]} - 1))); do
			p=${PL[$(((k + round - 1) % ${#PL[@]}))]}
			start_broker || continue
			addr=$IP:1883
			[ "$p" = native ] && addr=$IP:9000
			[ "$c" = durable ] && [ "$p" = mqtt ] && durable_setup
			out=$RESULTS/$c.$p.$round.json
			log "round $round: $c $p"
			# shellcheck disable=SC2046
			timeout --kill-after=5 300 "$CIM" bench $(case_args "$c" "$p" "$round") --proto "$p" --addr "$addr" \
				--broker-pid "$BPID" --json --progress none >"$out" 2>"$out.err" &
			GEN=$!
			PIDS+=("$GEN")
			wait "$GEN"
			rc=$?
			[ $rc -ne 0 ] && log "  exit $rc: $(tail -2 "$out.err" | tr '\n' ' ')"
			stop_broker
		done
	done
done

# --------------------------------------------------------------- report ----

python3 - "$RESULTS" "$ROUNDS" "$CASES" "$PROTOS" "$CONNS" <<'EOF'
import json, os, statistics, sys
res, rounds, cases, protos, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]

def load(c, p, r):
    try:
        with open(os.path.join(res, f"{c}.{p}.{r}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(j, path):
    for k in path.split("."):
        if not isinstance(j, dict) or k not in j:
            return None
        j = j[k]
    return j

def med(c, p, path):
    v = [get(load(c, p, r), path) for r in range(1, rounds + 1)]
    v = [x for x in v if isinstance(x, (int, float)) and x >= 0]
    return statistics.median(v) if v else None

def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "rate":
        return f"{v/1000:.0f}k" if v >= 10000 else f"{v:.0f}"
    if kind == "us":
        return f"{v:,.0f} µs" if v >= 100 else f"{v:.1f} µs"
    if kind == "bytes":
        if v >= 1 << 20:
            return f"{v/(1<<20):.1f} MB"
        return f"{v/1024:.2f} KB" if v >= 1024 else f"{v:.0f} B"
    return str(v)

rows = [
    ("fanin0", "rate", "rate", "fan-in QoS 0 (10→1), msgs/s"),
    ("fanin0", "latency.p99_us", "us", "fan-in QoS 0, p99 latency"),
    ("fanin1", "rate", "rate", "fan-in QoS 1 (10→1), msgs/s"),
    ("fanin1", "latency.p99_us", "us", "fan-in QoS 1, p99 latency"),
    ("fanin1", "ack_latency.p99_us", "us", "fan-in QoS 1, p99 ack latency"),
    ("fanin1p", "rate", "rate", "fan-in QoS 1, stored sessions (MQTT --clean=false), msgs/s"),
    ("fanin1p", "latency.p99_us", "us", "fan-in QoS 1, stored sessions, p99 latency"),
    ("fanout0", "rate", "rate", "fan-out QoS 0 (1→100), deliveries/s"),
    ("fanout0", "latency.p99_us", "us", "fan-out QoS 0, p99 latency"),
    ("pairs0", "rate", "rate", "pairs QoS 0 (100), msgs/s"),
    ("pairs0", "latency.p99_us", "us", "pairs QoS 0, p99 latency"),
    ("fanin0r", "rate", "rate", "fan-in QoS 0 at 10 × 5,000/s, msgs/s"),
    ("fanin0r", "latency.p99_us", "us", "fan-in QoS 0 at 50k/s, p99 latency"),
    ("fanout0r", "rate", "rate", "fan-out QoS 0 at 1,000/s → 100, deliveries/s"),
    ("fanout0r", "latency.p99_us", "us", "fan-out QoS 0 at 100k deliveries/s, p99 latency"),
    ("pairs0r", "rate", "rate", "pairs QoS 0 at 100 × 500/s, msgs/s"),
    ("pairs0r", "latency.p99_us", "us", "pairs QoS 0 at 50k/s, p99 latency"),
    ("fanin0", "broker.cpu_per_msg_us", "us", "broker CPU per delivered msg, fan-in QoS 0"),
    ("pairs0", "broker.cpu_per_msg_us", "us", "broker CPU per delivered msg, pairs QoS 0"),
    ("fanin0", "tool_cpu_per_msg_us", "us", "load tool CPU per delivered msg, fan-in QoS 0"),
    ("pairs0", "tool_cpu_per_msg_us", "us", "load tool CPU per delivered msg, pairs QoS 0"),
    ("conn", "broker.rss_per_conn_bytes", "bytes", f"RSS per idle connection at {conns}"),
    ("conn", "broker.rss_before_bytes", "bytes", f"broker RSS before connecting (native: {conns} accounts registered)"),
    ("conn", "connect_rate", "rate", f"connect rate to {conns}, conns/s"),
    ("durable", "send_rate", "rate", "durable QoS 1 into offline sessions, acked msgs/s"),
    ("durable", "ack_latency.p99_us", "us", "durable QoS 1, p99 ack latency"),
]
hdr = "| case | " + " | ".join(protos) + (" | native / mqtt |" if set(protos) == {"mqtt", "native"} else " |")
print(hdr)
print("|---|" + "---|" * (len(protos) + (1 if set(protos) == {"mqtt", "native"} else 0)))
for c, path, kind, label in rows:
    if c not in cases:
        continue
    vals = {p: med(c, p, path) for p in protos}
    line = f"| {label} | " + " | ".join(fmt(vals[p], kind) for p in protos)
    if set(protos) == {"mqtt", "native"}:
        a, b = vals["native"], vals["mqtt"]
        line += " | " + (f"{a/b:.2f}×" if a is not None and b else "-")
    print(line + " |")
bad = []
for c in cases:
    for p in protos:
        for r in range(1, rounds + 1):
            j = load(c, p, r)
            if j is None:
                bad.append(f"{c}/{p}/{r}: no report")
            elif j.get("errors"):
                bad.append(f"{c}/{p}/{r}: errors {j['errors']}")
if bad:
    print("\nRuns with errors: " + "; ".join(bad))
EOF
