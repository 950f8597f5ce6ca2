#!/usr/bin/env bash
# Builds the chorus binary on the host (static: CGO_ENABLED=0) and the
# FROM scratch image around it (deploy/Dockerfile).
#
#     deploy/build-image.sh [TAG]        # default chorus:dev
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-chorus:dev}"
ctx="$root/deploy/.build"
rm -rf "$ctx"
mkdir -p "$ctx/data"
(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$ctx/chorus" ./cmd/chorus)
docker build -q -f "$root/deploy/Dockerfile" -t "$tag" "$ctx" >/dev/null
echo "$tag"
