# syntax=docker/dockerfile:1
# The causeway binary (gateway daemon and CLI) in a small non-root image.
#   docker build -t causeway:dev .
# Used by `causeway install` (--image) and e2e/kind/run.sh.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build outputs between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p causeway-gateway --locked \
    && cp target/release/causeway /causeway

# glibc and libgcc only, no shell; runs as uid/gid 65532 ("nonroot"), which the
# Deployment from `causeway install` also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /causeway /usr/local/bin/causeway
USER 65532:65532
# Tunnel (QUIC, UDP), registry (gRPC, TCP), DNS (unprivileged port), admin HTTP.
EXPOSE 15443/udp 15444/tcp 5353/udp 5353/tcp 15090/tcp
ENTRYPOINT ["causeway"]
CMD ["gateway", "run", "--config", "/etc/causeway/gateway.toml"]
