# syntax=docker/dockerfile:1
#
# Jetway images: one build stage, one small runtime image per binary.
#
#   docker build --target gateway -t jetway-gateway .
#   docker build --target worker  -t jetway-worker  .
#
# (docker compose builds both; see docker-compose.yaml.)
#
# Runtime: gcr.io/distroless/cc-debian12:nonroot -- glibc, libgcc and CA
# certificates, no shell, no package manager, user 65532 (nonroot). The
# builder is Debian 12 (bookworm) too, so the binaries link against the same
# glibc.
#
# Health: the images carry no shell and no curl, so there is deliberately no
# HEALTHCHECK instruction (it would need a command inside the container).
# Probe the gateway over HTTP from outside instead: GET /healthz (liveness)
# and GET /readyz (readiness: 503 while NATS is unreachable or the gateway is
# draining). Kubernetes does this with httpGet probes (deploy/k8s/base),
# docker compose with the load balancer's active check (deploy/lb). The
# worker has no HTTP port; it exits non-zero when it cannot work, and the
# orchestrator restarts it.
#
# Both binaries stop cleanly on SIGTERM (the default stop signal) within
# grace_period_secs (20 s by default): give the container longer than that
# (compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The whole workspace (see .dockerignore): Cargo needs every member's
# manifest even when it builds two packages.
COPY . .
# Cache mounts keep the registry and the target directory between builds;
# the binaries are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetway-gateway -p jetway-worker \
    && mkdir -p /out \
    && cp target/release/jetway-gateway target/release/jetway-worker /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS worker
LABEL org.opencontainers.image.title="jetway-worker" \
      org.opencontainers.image.description="Jetway worker: runs MCP tools for requests taken from NATS JetStream" \
      org.opencontainers.image.source="https://github.com/jetway-mcp/jetway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/jetway-worker /usr/local/bin/jetway-worker
# Numeric, so Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jetway-worker"]

FROM gcr.io/distroless/cc-debian12:nonroot AS gateway
LABEL org.opencontainers.image.title="jetway-gateway" \
      org.opencontainers.image.description="Jetway gateway: a stateless MCP Streamable HTTP endpoint on NATS JetStream" \
      org.opencontainers.image.source="https://github.com/jetway-mcp/jetway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/jetway-gateway /usr/local/bin/jetway-gateway
# The binary's default is 127.0.0.1:8080, unreachable from outside a
# container; listen on every interface instead (a flag, the environment or
# the TOML file still override this).
ENV JETWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jetway-gateway"]
