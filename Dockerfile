# syntax=docker/dockerfile:1.7
# One image per service from this one file: `--build-arg SERVICE=identity` (issuer,
# revocation, verifier, payments). skaffold.yaml builds the five artifacts.
#
# Stages: `chef` (the toolchain and cargo-chef), `planner` (the dependency recipe from
# the manifests), `builder` (dependencies cooked in a layer of their own, the same for
# every service, then the one binary), and the runtime: distroless cc (glibc and libgcc,
# no shell, no package manager), user 65532, nothing written at run time, so the pod
# runs with a read-only root filesystem. Certificates, keys and configuration are
# mounted at /etc/citypass by Kubernetes (k8s/base), never baked in.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The five services' dependencies, one cached layer shared by every service's image.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p citypass-identity -p citypass-issuer -p citypass-revocation-service \
      -p citypass-verifier -p citypass-payments
COPY . .
ARG SERVICE
RUN test -n "${SERVICE}" \
 && cargo build --release --locked --bin "citypass-${SERVICE}" \
 && cp "target/release/citypass-${SERVICE}" /citypass

FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="citypass-${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /citypass /citypass
USER 65532:65532
ENTRYPOINT ["/citypass"]
