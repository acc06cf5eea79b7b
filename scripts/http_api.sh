#!/usr/bin/env bash
# http_api.sh: the IM HTTP API with curl, as cim's clients call it: cim's
# route API (registerAccount, login, p2pRoute, groupRoute, onlineUser,
# offLine, fetchOfflineMsgs) and /v1, against a real `cim server`.
# Usage: scripts/http_api.sh [path/to/cim]     (run by make test)
set -uo pipefail

BIN=${1:-bin/cim}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }
tmp=$(mktemp -d /tmp/cim-http.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
API=http://127.0.0.1:$HTTP
"$BIN" server --memory --mqtt-addr 127.0.0.1:0 --native-addr 127.0.0.1:0 --http-addr "127.0.0.1:$HTTP" \
	--log-level warn >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

pass=0
fail=0
check() { # check NAME WANT GOT
	if [[ "$3" == *"$2"* ]]; then
		pass=$((pass + 1))
		echo "PASS $1"
	else
		fail=$((fail + 1))
		echo "FAIL $1: want $2 in: $3"
	fi
}
post() { curl -s -X POST -H 'Content-Type: application/json' -d "$2" "$API$1"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d['dataBody']$1)"; }

r=$(post /registerAccount '{"reqNo":"r1","timeStamp":1,"userName":"zhang"}')
check "registerAccount answers cim's envelope" '"code":"9000"' "$r"
check "registerAccount echoes reqNo" '"reqNo":"r1"' "$r"
zhang=$(echo "$r" | field "['userId']")
r2=$(post /registerAccount '{"userName":"zhang"}')
check "registering a name again gives the same id" "\"userId\":$zhang" "$r2"
li=$(post /registerAccount '{"userName":"li"}' | field "['userId']")

r=$(post /login "{\"userId\":$zhang,\"userName\":\"zhang\"}")
check "login names the node to connect to" '"cimServerPort":' "$r"
check "login answers the HTTP port" "\"httpPort\":$HTTP" "$r"
r=$(post /login "{\"userId\":$zhang,\"userName\":\"li\"}")
check "login with another account's name is refused" '"code":"9100"' "$r"

r=$(post /p2pRoute "{\"userId\":$zhang,\"receiveUserId\":$li,\"msg\":\"hi li\"}")
check "p2pRoute to an offline user says stored (7000)" '"code":"7000"' "$r"
r=$(post /p2pRoute "{\"userId\":$zhang,\"receiveUserId\":$li,\"batchMsg\":[\"one\",\"two\"]}")
check "p2pRoute with a batch" '"code":"7000"' "$r"
r=$(post /groupRoute "{\"userId\":$zhang,\"msg\":\"hello everyone\"}")
check "groupRoute" '"code":"9000"' "$r"
r=$(curl -s "$API/onlineUser")
check "onlineUser lists nobody online" '"dataBody":[]' "$r"
r=$(post /fetchOfflineMsgs "{\"receiveUserId\":$li}")
check "fetchOfflineMsgs" '"code":"9000"' "$r"
r=$(post /offLine "{\"userId\":$li}")
check "offLine" '"code":"9000"' "$r"

r=$(curl -s "$API/v1/history?user=$li&with=user:$zhang")
check "v1 history has the private messages, newest first" '"body":"two"' "$r"
r=$(post /v1/messages "{\"from\":$zhang,\"to\":\"all\",\"body\":\"later\",\"delayMs\":60000}")
check "v1 delayed message accepted" '"code":"9000"' "$r"
r=$(curl -s "$API/v1/delayed?user=$zhang")
check "v1 delayed message listed" '"body":"later"' "$r"
r=$(post /v1/groups "{\"name\":\"team\",\"owner\":$zhang}")
check "v1 group created" '"members":1' "$r"
r=$(post /v1/groups/team/members "{\"user\":$li}")
check "v1 group joined" '"members":2' "$r"

r=$(post /registerAccount '{"userName":')
check "bad JSON is 3000" '"code":"3000"' "$r"
r=$(post /p2pRoute "{\"userId\":$zhang}")
check "a missing field is named" 'receiveUserId is required' "$r"
r=$(post /p2pRoute "{\"userId\":\"zhang\",\"receiveUserId\":$li,\"msg\":\"x\"}")
check "a field of the wrong type is named" 'userId' "$r"
r=$(post /p2pRoute "{\"userId\":$zhang,\"receiveUserId\":987654,\"msg\":\"x\"}")
check "an unknown receiver is 3005" '"code":"3005"' "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' "$API/no/such/route")
check "an unknown route is 404" '404' "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' "$API/p2pRoute")
check "a wrong method is 405" '405' "$r"
r=$(head -c 2000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"userName":"/;s/$/"}/' | curl -s -X POST -H 'Content-Type: application/json' --data-binary @- "$API/registerAccount")
check "a body over the limit is refused (413)" '"code": "too_large"' "$r"

echo "$pass passed, $fail failed"
if [ "$fail" -ne 0 ]; then
	echo "--- server log"
	cat "$tmp/server.log"
	exit 1
fi
