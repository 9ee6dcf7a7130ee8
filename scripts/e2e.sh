#!/usr/bin/env bash
# End-to-end run on kind (`make e2e`), and its clean-up (`make e2e-clean`).
#
#   scripts/e2e.sh run     create or reuse the kind cluster, build and load both images,
#                          install both charts, deploy the PostgreSQL backend, run the e2e
#                          crate (E2E=1 cargo test -p e2e -- --nocapture --test-threads=1)
#   scripts/e2e.sh up      only the cluster, images, charts and backend (then run the tests
#                          yourself: E2E=1 KUBECONFIG=.cache/e2e/kubeconfig cargo test -p e2e)
#   scripts/e2e.sh clean   delete the kind cluster
#
# Needs docker (running), kind, kubectl, helm and cargo; stops at once naming what is
# missing. kubectl and helm are taken from PATH, else installed into .cache/tools by
# scripts/helm.sh where it can (linux/amd64 with pip).
#
# Settings (environment): KIND_CLUSTER (pgpool-e2e), KIND_NODE_IMAGE (kind's default),
# REGISTRY (ghcr.io/pgpool-operator), IMAGE_TAG (e2e), OPERATOR_NAMESPACE (pgpool-system).
# The cluster's kubeconfig is written to .cache/e2e/kubeconfig; your own kubeconfig is not
# touched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KIND_CLUSTER="${KIND_CLUSTER:-pgpool-e2e}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
REGISTRY="${REGISTRY:-ghcr.io/pgpool-operator}"
IMAGE_TAG="${IMAGE_TAG:-e2e}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-pgpool-system}"
DEMO_NAMESPACE=demo
DOCKER="${DOCKER:-docker}"
CARGO="${CARGO:-cargo}"
STATE_DIR="$ROOT/.cache/e2e"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
MIN_K8S_MINOR=30

say() { echo "e2e: $*"; }
die() {
  echo "e2e: $*" >&2
  exit 1
}

# --- tools -------------------------------------------------------------------------------

# Every missing prerequisite is collected and reported together, so that one round of
# installing fixes them all.
MISSING=()
missing() { MISSING+=("$*"); }

need_docker() {
  if ! command -v "$DOCKER" >/dev/null 2>&1; then
    missing "docker not found: install Docker (https://docs.docker.com/get-docker/); make e2e builds the operator images with it and kind runs the cluster in it"
    return
  fi
  local err
  if ! err="$("$DOCKER" info 2>&1 >/dev/null)"; then
    missing "docker is installed but its daemon does not answer: start Docker. It said: $(printf '%s' "$err" | tail -n 1)"
  fi
}

need_kind() {
  command -v kind >/dev/null 2>&1 ||
    missing "kind not found: install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation), e.g. 'go install sigs.k8s.io/kind@latest' or your package manager"
}

need_cargo() {
  command -v "$CARGO" >/dev/null 2>&1 ||
    missing "cargo not found: install Rust (https://rustup.rs); the e2e tests are a Rust crate"
}

# kubectl and helm: PATH first, else scripts/helm.sh's cache (installed when possible).
KUBECTL=""
HELM=""
need_kube_tools() {
  if command -v kubectl >/dev/null 2>&1 && kubectl version --client >/dev/null 2>&1; then
    KUBECTL="$(command -v kubectl)"
  elif ! KUBECTL="$(scripts/helm.sh path kubectl 2>/dev/null)"; then
    missing "kubectl not found: install kubectl (https://kubernetes.io/docs/tasks/tools/)"
  fi
  if command -v helm >/dev/null 2>&1 && helm version >/dev/null 2>&1; then
    HELM="$(command -v helm)"
  elif ! HELM="$(scripts/helm.sh path helm 2>/dev/null)"; then
    missing "helm not found: install helm 3.8+ (https://helm.sh/docs/intro/install/)"
  fi
}

check_tools() {
  need_docker
  need_kind
  need_kube_tools
  need_cargo
  if [ "${#MISSING[@]}" -gt 0 ]; then
    local m
    for m in "${MISSING[@]}"; do
      echo "e2e: $m" >&2
    done
    exit 1
  fi
  say "tools: $("$DOCKER" version --format 'docker {{.Server.Version}}' 2>/dev/null || echo docker), $(kind version 2>/dev/null | awk '{print $1, $2}'), kubectl $("$KUBECTL" version --client 2>/dev/null | head -n 1 | awk '{print $3}'), helm $("$HELM" version --short 2>/dev/null), $("$CARGO" --version)"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
hm() { "$HELM" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# --- steps -------------------------------------------------------------------------------

cluster_up() {
  mkdir -p "$STATE_DIR"
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    say "reusing kind cluster $KIND_CLUSTER"
    kind get kubeconfig --name "$KIND_CLUSTER" >"$KUBECONFIG_FILE"
  else
    say "creating kind cluster $KIND_CLUSTER (e2e/kind.yaml)"
    local args=(create cluster --name "$KIND_CLUSTER" --config e2e/kind.yaml
      --kubeconfig "$KUBECONFIG_FILE" --wait 180s)
    [ -n "$KIND_NODE_IMAGE" ] && args+=(--image "$KIND_NODE_IMAGE")
    kind "${args[@]}"
  fi
  chmod 600 "$KUBECONFIG_FILE"
  local version minor
  version="$(kc get --raw /version)" || die "the cluster does not answer (kubeconfig $KUBECONFIG_FILE)"
  minor="$(printf '%s' "$version" | tr -d ' \n' | sed -n 's/.*"minor":"\([0-9]*\).*/\1/p')"
  if [ -z "$minor" ] || [ "$minor" -lt "$MIN_K8S_MINOR" ]; then
    die "the cluster runs Kubernetes 1.${minor:-?}; the charts need 1.$MIN_K8S_MINOR+ (ValidatingAdmissionPolicy v1): recreate it with a newer kind or KIND_NODE_IMAGE=kindest/node:v1.33.x (make e2e-clean first)"
  fi
  say "cluster: Kubernetes 1.$minor"
}

# Builds the images, tags them by content so that a rebuilt image rolls the Deployment,
# and loads them into the kind node.
PROVISIONER_TAG=""
OPS_MANAGER_TAG=""
images() {
  REGISTRY="$REGISTRY" IMAGE_TAG="$IMAGE_TAG" DOCKER="$DOCKER" scripts/images.sh
  local image id tag
  for image in pgpool-provisioner pgpool-ops-manager; do
    id="$("$DOCKER" image inspect --format '{{.Id}}' "$REGISTRY/$image:$IMAGE_TAG")"
    id="${id#sha256:}"
    tag="$IMAGE_TAG-${id:0:12}"
    "$DOCKER" tag "$REGISTRY/$image:$IMAGE_TAG" "$REGISTRY/$image:$tag"
    say "loading $REGISTRY/$image:$tag into kind"
    kind load docker-image --name "$KIND_CLUSTER" "$REGISTRY/$image:$tag"
    case "$image" in
      pgpool-provisioner) PROVISIONER_TAG="$tag" ;;
      pgpool-ops-manager) OPS_MANAGER_TAG="$tag" ;;
    esac
  done
}

charts() {
  # Helm installs crds/ only on the first install and never upgrades them: apply them
  # first so that a reused cluster gets the current definitions.
  say "applying the CRDs"
  kc apply --server-side --force-conflicts -f charts/pgpool-provisioner/crds/ -f charts/pgpool-ops-manager/crds/ >/dev/null
  kc wait --for=condition=Established --timeout=60s \
    -f charts/pgpool-provisioner/crds/ -f charts/pgpool-ops-manager/crds/ >/dev/null
  local chart tag
  for chart in pgpool-provisioner pgpool-ops-manager; do
    case "$chart" in
      pgpool-provisioner) tag="$PROVISIONER_TAG" ;;
      pgpool-ops-manager) tag="$OPS_MANAGER_TAG" ;;
    esac
    say "helm upgrade --install $chart (image $REGISTRY/$chart:$tag)"
    hm upgrade --install "$chart" "charts/$chart" \
      --namespace "$OPERATOR_NAMESPACE" --create-namespace \
      --set "image.repository=$REGISTRY/$chart" \
      --set "image.tag=$tag" \
      --set image.pullPolicy=IfNotPresent \
      --set logLevel=debug \
      --wait --timeout 5m || {
      diagnostics
      die "installing $chart failed (see above)"
    }
  done
  # The provisioner applies the default catalog itself once it leads (the chart ships it
  # as a ConfigMap); wait for it before creating Pgpools.
  say "waiting for the provisioner to apply the PgpoolVersion catalog"
  local i
  for i in $(seq 1 60); do
    kc get pgpoolversion 4.5.3 4.6.0 >/dev/null 2>&1 && return 0
    sleep 2
  done
  diagnostics
  die "the provisioner did not apply the PgpoolVersion catalog within 120 s"
}

backend() {
  say "deploying PostgreSQL and the AppBinding (e2e/manifests/)"
  kc apply -f e2e/manifests/ >/dev/null
  kc -n "$DEMO_NAMESPACE" rollout status deployment/ha-postgres --timeout 300s || {
    diagnostics
    die "PostgreSQL did not become ready"
  }
}

diagnostics() {
  echo "----- diagnostics -----" >&2
  kc get pgpools,pgpoolopsrequests,petsets,pods,svc -n "$DEMO_NAMESPACE" -o wide >&2 || true
  kc get pgpoolversions >&2 || true
  kc get deploy,pods -n "$OPERATOR_NAMESPACE" -o wide >&2 || true
  kc get events -n "$DEMO_NAMESPACE" --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 >&2 || true
  local app
  for app in pgpool-provisioner pgpool-ops-manager; do
    echo "----- logs of $app (last 80 lines) -----" >&2
    kc logs -n "$OPERATOR_NAMESPACE" -l "app.kubernetes.io/name=$app" --tail 80 --prefix >&2 || true
  done
  echo "----- the cluster stays up: KUBECONFIG=$KUBECONFIG_FILE kubectl ...; make e2e-clean deletes it -----" >&2
}

run_tests() {
  say "running the e2e crate (E2E=1 cargo test -p e2e -- --nocapture --test-threads=1)"
  if ! E2E=1 KUBECONFIG="$KUBECONFIG_FILE" HELM="$HELM" \
    "$CARGO" test -p e2e -- --nocapture --test-threads=1; then
    diagnostics
    die "the e2e tests failed (output above)"
  fi
  cat <<EOF

e2e: passed. The cluster stays up for a look around:
  export KUBECONFIG=$KUBECONFIG_FILE
  kubectl get pp,ppops -n $DEMO_NAMESPACE
  kubectl get pods -n $OPERATOR_NAMESPACE
make e2e-clean deletes it.
EOF
}

clean() {
  if ! command -v kind >/dev/null 2>&1; then
    say "kind not found: nothing to delete"
    return 0
  fi
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    kind delete cluster --name "$KIND_CLUSTER"
  else
    say "no kind cluster $KIND_CLUSTER"
  fi
  rm -f "$KUBECONFIG_FILE"
}

case "${1:-run}" in
  run)
    check_tools
    cluster_up
    images
    charts
    backend
    run_tests
    ;;
  up)
    check_tools
    cluster_up
    images
    charts
    backend
    say "ready: E2E=1 KUBECONFIG=$KUBECONFIG_FILE cargo test -p e2e -- --nocapture --test-threads=1"
    ;;
  clean)
    clean
    ;;
  *)
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
