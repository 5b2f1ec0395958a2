# syntax=docker/dockerfile:1
# A static release binary on a distroless base: no shell, no package manager, non-root.
#   docker build -t cloudphone-operator:dev .

FROM rust:1.95-alpine AS build
# musl is Alpine's libc, so the release binary links statically; aws-lc (rustls' crypto) builds
# with these.
RUN apk add --no-cache musl-dev cmake make clang perl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin cloudphone-operator \
 && strip target/release/cloudphone-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cloudphone-operator" \
      org.opencontainers.image.description="Keeps a fleet of KooPhone (CloudDevice) cloud phones at their declared lifecycles, as CloudPhone resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/cloudphone-operator/cloudphone-operator"
COPY --from=build /src/target/release/cloudphone-operator /cloudphone-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cloudphone-operator"]
CMD ["run"]
