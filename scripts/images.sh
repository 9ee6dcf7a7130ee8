#!/usr/bin/env bash
# Builds the two operator images from the Dockerfile (`make images`):
#   $REGISTRY/pgpool-provisioner:$IMAGE_TAG and $REGISTRY/pgpool-ops-manager:$IMAGE_TAG
# REGISTRY defaults to ghcr.io/pgpool-operator, IMAGE_TAG to dev. DOCKER picks another
# client with the same command line (for example DOCKER=podman).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REGISTRY="${REGISTRY:-ghcr.io/pgpool-operator}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
DOCKER="${DOCKER:-docker}"

if ! command -v "$DOCKER" >/dev/null 2>&1; then
  echo "images: '$DOCKER' not found: building the images needs Docker (https://docs.docker.com/get-docker/), or set DOCKER to a compatible client such as podman" >&2
  exit 1
fi
if ! info_err="$("$DOCKER" info 2>&1 >/dev/null)"; then
  echo "images: '$DOCKER' is installed but its daemon does not answer: start Docker (or check DOCKER_HOST). It said: $(printf '%s' "$info_err" | tail -n 1)" >&2
  exit 1
fi

export DOCKER_BUILDKIT=1
for image in pgpool-provisioner pgpool-ops-manager; do
  ref="$REGISTRY/$image:$IMAGE_TAG"
  echo "images: building $ref"
  "$DOCKER" build --target "$image" --tag "$ref" .
done
echo "images: built $REGISTRY/pgpool-provisioner:$IMAGE_TAG and $REGISTRY/pgpool-ops-manager:$IMAGE_TAG"
