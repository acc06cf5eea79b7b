# cim: make run starts one node on embedded defaults; make test runs everything CI runs.
GO      ?= go
BIN     := bin/cim
PKGS    := ./...
# Packages where concurrency lives run under the race detector.
RACE    := ./broker/... ./storage/... ./bench/... ./client/... ./chat/... ./web/... ./cluster/...

# The version `cim version` prints; without git (or tags) cim falls back to
# what the Go toolchain recorded (see cmd/cim/version.go).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-browser bench bench-recovery fuzz clean cross test-deploy

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cim

# Static binaries for the release platforms: bin/cim-linux-amd64,
# bin/cim-linux-arm64, bin/cim-linux-armv7. Each is tried; the target fails
# at the end if any failed, naming it.
cross:
	@failed=; \
	for p in linux/amd64 linux/arm64 linux/arm/7; do \
		os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=; out=bin/cim-$$os-$$arch; \
		case $$rest in arm/*) arm=$${rest#arm/}; out=bin/cim-$$os-armv$$arm;; esac; \
		echo "CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm -> $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/cim \
			|| failed="$$failed $$p"; \
	done; \
	if [ -n "$$failed" ]; then echo "cross: failed:$$failed"; exit 1; fi

# Offline checks of the Dockerfile, the Kubernetes manifests and the systemd
# unit (a module of its own: see deploy/doc.go).
test-deploy:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

run: build
	./$(BIN) server

test: build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 8m $(PKGS)
	$(GO) test -count=1 -race -timeout 10m $(RACE)
	./scripts/mosquitto_e2e.sh ./$(BIN)
	/usr/bin/python3 scripts/paho_interop.py ./$(BIN)
	/usr/bin/python3 scripts/paho_cluster.py ./$(BIN)
	/usr/bin/python3 scripts/native_interop.py ./$(BIN)
	./scripts/http_api.sh ./$(BIN)
	./scripts/chat_e2e.sh ./$(BIN)
	./scripts/chat_tmux.sh ./$(BIN)
	$(MAKE) test-browser
	$(MAKE) test-deploy

# The chat page in headless Chromium against the built binary (needs
# chromium); screenshots in bin/screenshots.
test-browser: build
	CIM_BROWSER=1 CIM_BIN=$(CURDIR)/$(BIN) CIM_SCREENSHOTS=$(CURDIR)/bin/screenshots $(GO) test -count=1 -run TestPageInBrowser -v ./web

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
	$(GO) test -run '^$$' -fuzz FuzzValidString -fuzztime $(FUZZTIME) ./broker/mqtt
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./broker/wire
	$(GO) test -run '^$$' -fuzz FuzzAgentFrame -fuzztime $(FUZZTIME) ./bench
	$(GO) test -run '^$$' -fuzz FuzzDecodeHist -fuzztime $(FUZZTIME) ./bench
	$(GO) test -run '^$$' -fuzz FuzzNativeClientRead -fuzztime $(FUZZTIME) ./bench
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./chat

clean:
	rm -rf bin
