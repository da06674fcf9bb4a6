# Builds the binaries; compose.yaml picks one per service with `target`.
#
# Needs BuildKit for the cache mounts (the default in current Docker; `DOCKER_BUILDKIT=1` on
# Docker 20.10). The cargo registry and the target directory live in cache mounts, so a rebuild
# after a source change compiles only what changed, not every dependency again.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# sqlx checks the queries against the committed .sqlx/ data: no database while building.
ENV SQLX_OFFLINE=true
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p payment-svc -p ranking-worker -p loadgen \
    && mkdir -p /out \
    && cp target/release/payment-svc target/release/ranking-worker target/release/loadgen /out/

# What the binaries need at run time: glibc (the base image's) and the CA bundle, nothing else
# (time zones and TLS, where used, are compiled in). The bundle is copied, not installed: the
# ca-certificates package would bring openssl along. A numeric user needs no passwd entry.
FROM debian:bookworm-slim AS runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 10001:10001

FROM runtime AS payment-svc
COPY --from=build /out/payment-svc /usr/local/bin/payment-svc
EXPOSE 8080
# Asks the service's own /readyz (HTTP_ADDR, default 0.0.0.0:8080, asked on loopback).
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=3 CMD ["payment-svc", "healthcheck"]
ENTRYPOINT ["payment-svc"]
CMD ["serve"]

FROM runtime AS ranking-worker
COPY --from=build /out/ranking-worker /usr/local/bin/ranking-worker
EXPOSE 8081
# Asks the worker's own /readyz (RANKING_HTTP_ADDR): ready when it can serve the ranking,
# active or standing by.
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=3 CMD ["ranking-worker", "healthcheck"]
ENTRYPOINT ["ranking-worker"]
CMD ["run"]

# The demo's buyers (compose profile `demo`) and the end-to-end check; not part of the
# deployment.
FROM runtime AS loadgen
COPY --from=build /out/loadgen /usr/local/bin/loadgen
ENTRYPOINT ["loadgen"]
CMD ["demo"]
