# activity-tracker: one image, one binary; the pod's args choose the
# subcommand (analytics, fraud, produce, collect, topics create, ...).
#
#   docker build -t activity-tracker:dev .
#   docker run --rm activity-tracker:dev --help

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# 1. Dependencies only, in their own layer: rebuilt when Cargo.toml or
#    Cargo.lock change, not when the sources do. librdkafka (C) is compiled
#    here, which is the slow part of the build.
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml ./crates/core/
COPY benches ./benches
RUN mkdir -p src crates/core/src \
    && printf 'fn main() {}\n' > src/main.rs \
    && touch src/lib.rs crates/core/src/lib.rs \
    && cargo build --release --locked --no-default-features \
    && rm -rf src crates/core/src
# 2. The sources: the pure core crate, then the service.
COPY crates/core/src ./crates/core/src
COPY src ./src
RUN touch src/main.rs src/lib.rs crates/core/src/lib.rs \
    && cargo build --release --locked --no-default-features \
    && strip target/release/activity-tracker

# glibc, libgcc and OpenSSL, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/activity-tracker /usr/local/bin/activity-tracker
# The distroless "nonroot" user, by number so runAsNonRoot can verify it.
USER 65532:65532
ENV HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/activity-tracker"]
CMD ["--help"]
