# cim: make run starts one node on embedded defaults; make test runs everything CI runs.
GO      ?= go
BIN     := bin/cim
PKGS    := ./...
# Packages where concurrency lives run under the race detector.
RACE    := ./broker/... ./storage/... ./bench/...

.PHONY: build run test test-unit test-race test-e2e bench fuzz clean

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

# Each fuzz target runs for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./broker/mqtt

clean:
	rm -rf bin
