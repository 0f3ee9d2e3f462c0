# syntax=docker/dockerfile:1

# Build stage: a static binary (pgx is pure Go, so no cgo is needed).
FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build context has no .git (.dockerignore): the identity comes in as
# build arguments, e.g. docker build --build-arg VERSION=$(git describe --tags --always)
#   --build-arg COMMIT=$(git rev-parse HEAD) --build-arg BUILD_DATE=$(date -u +%FT%TZ) .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.buildDate=${BUILD_DATE}" \
    -o /out/controlplane ./cmd/controlplane

# Runtime stage: Debian's slim image with PostgreSQL 15's client programs,
# which tenant backups and restores run (pg_dump, pg_restore; their major
# version must be at least the tenant servers': for newer servers, install
# that version's client instead). No compiler, no source; runs as uid 65532.
# The SQL migrations are embedded in the binary.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/controlplane --create-home nonroot \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/controlplane/backups
COPY --from=build /out/controlplane /controlplane
ENV BACKUP_DIR=/var/lib/controlplane/backups \
    PG_BIN_DIR=/usr/lib/postgresql/15/bin
USER 65532:65532
WORKDIR /var/lib/controlplane
EXPOSE 8080
ENTRYPOINT ["/controlplane"]
CMD ["serve"]
