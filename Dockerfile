# syntax=docker/dockerfile:1
#
# One build of both operator binaries, then one small image per binary:
#
#   docker build --target pgpool-provisioner -t ghcr.io/pgpool-operator/pgpool-provisioner:dev .
#   docker build --target pgpool-ops-manager -t ghcr.io/pgpool-operator/pgpool-ops-manager:dev .
#
# `make images` runs both (REGISTRY and IMAGE_TAG choose the names). The runtime images are
# distroless (glibc, CA certificates, tzdata; no shell, no package manager) and run as the
# non-root user 65532. The binaries are dynamically linked against glibc only: the builder
# and the runtime are both Debian 12, so their glibc versions match.
# BuildKit is required (the default builder since Docker 23) for the cache mounts.

ARG RUST_VERSION=1.95
ARG DEBIAN_CODENAME=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_CODENAME} AS builder
WORKDIR /src
# Strip symbols from the release binaries (about a fifth of their size).
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY . .
# The registry and target caches persist between builds on the same machine; the binaries
# are copied out of the cached target directory in the same step.
RUN --mount=type=cache,id=pgpool-operator-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=pgpool-operator-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=pgpool-operator-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p pgpool-provisioner -p pgpool-ops-manager --bins \
    && mkdir -p /out \
    && cp target/release/pgpool-provisioner target/release/pgpool-ops-manager /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS pgpool-provisioner
LABEL org.opencontainers.image.title="pgpool-provisioner" \
      org.opencontainers.image.description="Turns KubeDB-compatible Pgpool objects into running Pgpool-II poolers" \
      org.opencontainers.image.source="https://github.com/pgpool-operator/pgpool-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/pgpool-provisioner /usr/local/bin/pgpool-provisioner
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgpool-provisioner"]

FROM gcr.io/distroless/cc-debian12:nonroot AS pgpool-ops-manager
LABEL org.opencontainers.image.title="pgpool-ops-manager" \
      org.opencontainers.image.description="Carries out KubeDB-compatible PgpoolOpsRequests (UpdateVersion, Restart) on Pgpool-II poolers" \
      org.opencontainers.image.source="https://github.com/pgpool-operator/pgpool-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/pgpool-ops-manager /usr/local/bin/pgpool-ops-manager
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgpool-ops-manager"]
