# cim: make run starts one node on embedded defaults; make test runs everything CI runs.
GO      ?= go
BIN     := bin/cim
PKGS    := ./...
# Packages where concurrency lives run under the race detector.
RACE    := ./broker/... ./storage/... ./bench/...

.PHONY: build run test bench bench-recovery fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/cim

run: build
	./$(BIN) server

test: build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 8m $(PKGS)
	$(GO) test -count=1 -race -timeout 10m $(RACE)
	./scripts/mosquitto_e2e.sh ./$(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./broker/... ./storage/...

# Time to serve again over 100,000 stored sessions with 1M queued messages.
bench-recovery:
	CIM_RECOVERY=1 $(GO) test -count=1 -timeout 10m -run TestRecoveryTime -v ./broker | grep -E 'RECOVERY|filled'

# Each fuzz target runs for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./broker/mqtt
	$(GO) test -run '^$$' -fuzz FuzzMatch -fuzztime $(FUZZTIME) ./broker/topic
	$(GO) test -run '^$$' -fuzz FuzzAppendPublish -fuzztime $(FUZZTIME) ./broker/mqtt
	$(GO) test -run '^$$' -fuzz FuzzMQTTClientRead -fuzztime $(FUZZTIME) ./bench

clean:
	rm -rf bin
