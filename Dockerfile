# flashsale service image: a static Go binary on an empty base, run as a non-root user.
#
#   docker build -t flashsale .          (BuildKit, the default builder since Docker 23: the
#                                         RUN --mount cache mounts below need it)
#   make image                           (the same, stamped with git's version and commit)
#
# The builder's Go version is go.mod's `go` line (internal/stack checks they agree), and
# GOTOOLCHAIN=local keeps the build from fetching another toolchain.
#
# The final stage is `scratch` rather than a distroless image: distroless publishes no
# version tags, only digests (its `:nonroot` tag moves), and the binary needs nothing from
# a base image but what is copied in below: a CA bundle (TLS to an https OTLP endpoint), a
# passwd/group naming the non-root user 65532, and a writable /tmp. There is no shell, so
# there is no HEALTHCHECK: orchestrators probe GET /livez and GET /readyz over HTTP, and the
# compose stack watches the service through Prometheus (up{job="flashsale"} and
# health_service_up) instead of a container healthcheck.

FROM golang:1.27.3-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly

# Dependencies first, so a source change does not download modules again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# The build's identity (service.version and flashsale_build_info): .git is not in the
# build context, so `make image` passes them from git; a plain `docker build` says dev.
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/flashsale ./cmd/flashsale

# The runtime file system: CA bundle, non-root user, sticky world-writable /tmp.
RUN mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/tmp \
 && chmod 1777 /out/rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/rootfs/etc/group

FROM scratch
COPY --from=build /out/rootfs/ /
COPY --from=build /out/flashsale /flashsale
USER 65532:65532
# API and /metrics (HTTP_ADDR, default :8080)
EXPOSE 8080
ENTRYPOINT ["/flashsale"]
