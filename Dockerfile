# syntax=docker/dockerfile:1

# Build stage: a static binary (pgx is pure Go, so no cgo is needed).
FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/controlplane ./cmd/controlplane

# Runtime stage: no shell, no package manager, runs as uid 65532 (nonroot).
# The SQL migrations are embedded in the binary, so nothing else is copied.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/controlplane /controlplane
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/controlplane"]
CMD ["serve"]
