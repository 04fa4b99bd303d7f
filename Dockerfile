# syntax=docker/dockerfile:1
#
# One image for every role: `docker run IMAGE api`, `… worker`, `… dev`.
# Build: docker build --build-arg VERSION=$(git describe --always --dirty) -t staged .
# The with-python target adds python3 for command stages (docs/PROTOCOL.md).

# --- build: a static binary --------------------------------------------------
FROM golang:1.26 AS build
# The image pins GOTOOLCHAIN=local; allow fetching the exact patch release
# go.mod asks for if this image's is older.
ENV GOTOOLCHAIN=auto
WORKDIR /src
# Modules first, so a code change does not re-download them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/staged-dev/staged/cli.version=${VERSION}" \
      -o /out/staged ./cmd/staged

# --- with-python: the runtime plus python3, for command stages ------------------
# Workers whose pipelines file (STAGED_PIPELINES) runs Python stages:
#   docker build --target with-python -t staged:python .
# The Python helper and client are in /opt/staged/python, the examples in
# /opt/staged/examples/python (their pipelines.yaml finds the helper there
# through PYTHONPATH=../../python). Another runtime is one more apk add in an
# image FROM this one or FROM the default target, e.g.
#   FROM staged:local
#   USER root
#   RUN apk add --no-cache nodejs
#   USER 10001:10001
# Stages get a scratch directory under $TMPDIR (/tmp): give a read-only
# container a writable /tmp (compose: tmpfs).
FROM alpine:3.22 AS with-python
RUN apk add --no-cache ca-certificates python3 \
 && addgroup -S -g 10001 staged \
 && adduser -S -D -H -u 10001 -G staged staged
COPY --from=build /out/staged /staged
COPY python/staged_stage.py python/staged_client.py /opt/staged/python/
COPY examples/python /opt/staged/examples/python
# A read-only root cannot take .pyc files; do not try.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 STAGED_ADDR=:8080
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["/staged"]
CMD ["worker"]

# --- runtime (the default target) ---------------------------------------------
# Alpine rather than distroless: docker-compose's API healthcheck needs an
# HTTP client in the image (busybox wget), and staged has no health
# subcommand. The process runs as an unprivileged user.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates \
 && addgroup -S -g 10001 staged \
 && adduser -S -D -H -u 10001 -G staged staged
COPY --from=build /out/staged /staged
USER 10001:10001
ENV STAGED_ADDR=:8080
# 8080: the API (staged api, dev); 9090: a worker's /metrics (staged worker).
EXPOSE 8080 9090
ENTRYPOINT ["/staged"]
CMD ["api"]
