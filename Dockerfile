# syntax=docker/dockerfile:1
#
# cim: one static binary on distroless, running as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t cim .
#   docker run -p 1883:1883 -v cim-data:/data cim
#
# Multi-platform: docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 .
# The build stage runs on the builder's own platform and cross-compiles.
# Base images are pinned to exact versions; pin their digests (@sha256:...)
# when cutting a release.

ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUN_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG TARGETVARIANT=
RUN CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" GOARM="${TARGETVARIANT#v}" \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cim ./cmd/cim \
 && mkdir -p /out/data

FROM ${RUN_IMAGE}
COPY --from=build /out/cim /usr/local/bin/cim
COPY cim.example.yaml /etc/cim/cim.yaml
# distroless's nonroot user; /data must be writable by it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# MQTT, MQTT over TLS, native protocol, HTTP (API, /metrics, /healthz),
# gossip (tcp and udp), peer links.
EXPOSE 1883/tcp 8883/tcp 9000/tcp 9443/tcp 8083/tcp 8084/tcp 7946/tcp 7946/udp 7947/tcp
# No curl in distroless: cim itself probes /healthz on the HTTP listener.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/cim", "health", "-q", "--url", "http://127.0.0.1:8083/healthz"]
ENTRYPOINT ["/usr/local/bin/cim"]
CMD ["server", "--config", "/etc/cim/cim.yaml", "--data-dir", "/data"]
