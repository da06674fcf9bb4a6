# Builds the binaries; compose.yaml picks one per service with `target`.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY payment-svc/Cargo.toml payment-svc/
COPY ranking-worker/Cargo.toml ranking-worker/
COPY loadgen/Cargo.toml loadgen/
RUN for crate in shared payment-svc ranking-worker loadgen; do \
        mkdir -p $crate/src && echo 'fn main() {}' > $crate/src/main.rs && touch $crate/src/lib.rs; \
    done \
    && cargo build --release --locked --workspace \
    && rm -rf shared/src payment-svc/src ranking-worker/src loadgen/src
COPY migrations migrations
COPY shared shared
COPY payment-svc payment-svc
COPY ranking-worker ranking-worker
COPY loadgen loadgen
# Touch the sources so cargo rebuilds our crates over the placeholder builds above.
RUN find shared payment-svc ranking-worker loadgen -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --workspace

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home app
USER app

FROM runtime AS payment-svc
COPY --from=build /src/target/release/payment-svc /usr/local/bin/payment-svc
EXPOSE 8080
ENTRYPOINT ["payment-svc"]
CMD ["serve"]

FROM runtime AS ranking-worker
COPY --from=build /src/target/release/ranking-worker /usr/local/bin/ranking-worker
EXPOSE 8081
ENTRYPOINT ["ranking-worker"]
CMD ["run"]

# The demo's buyers (compose profile `demo`); not part of the deployment.
FROM runtime AS loadgen
COPY --from=build /src/target/release/loadgen /usr/local/bin/loadgen
ENTRYPOINT ["loadgen"]
CMD ["demo"]
