# syntax=docker/dockerfile:1
# A static release binary on a distroless base: no shell, no package manager, non-root.
#   docker build -t cloudphone-operator:dev .
# The release workflow (.github/workflows/release.yml) builds it once per platform on a native runner
# and sets VERSION, REVISION and CREATED. Both base images are pinned by digest (a tag can be moved);
# the tag beside each digest says which one it was: bump both together.

FROM rust:1.95-alpine@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS build
# musl is Alpine's libc, so the release binary links statically; aws-lc (rustls' crypto) builds
# with these. NB: not pinned to package versions: the base image's digest fixes the Alpine release,
# and Alpine drops superseded package versions from its mirrors, so a pin would break the build.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev cmake make clang perl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin cloudphone-operator \
 && strip target/release/cloudphone-operator

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
# Set by the release workflow: the release's version (no leading v), the commit it was built from,
# and when (RFC 3339). The defaults mark a local build.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="cloudphone-operator" \
      org.opencontainers.image.description="Keeps a fleet of KooPhone (CloudDevice) cloud phones at their declared lifecycles, as CloudPhone resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cloudphone-operator/cloudphone-operator"
COPY --from=build /src/target/release/cloudphone-operator /cloudphone-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cloudphone-operator"]
CMD ["run"]
