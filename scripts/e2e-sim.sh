#!/usr/bin/env bash
# The e2e scenario without Docker or a cluster (`make e2e-sim`): testkit's in-memory API
# server stands in for Kubernetes, both operator binaries run on this machine with leader
# election on, and the e2e crate runs with E2E_SIMULATE_KUBELET=1 (it marks pods
# Running/Ready itself, so the SQL steps are left out). It exercises the same test code as
# `make e2e`, against the real binaries.
#
# Needs cargo, curl and kubectl (from PATH or .cache/tools via scripts/helm.sh).
# Ports: PROVISIONER_PORT (18080) and OPS_MANAGER_PORT (18081) on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
PROVISIONER_PORT="${PROVISIONER_PORT:-18080}"
OPS_MANAGER_PORT="${OPS_MANAGER_PORT:-18081}"
STATE_DIR="$ROOT/.cache/e2e-sim"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"

say() { echo "e2e-sim: $*"; }
die() {
  echo "e2e-sim: $*" >&2
  exit 1
}

command -v "$CARGO" >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
command -v curl >/dev/null 2>&1 || die "curl not found: install curl"
KUBECTL="$(scripts/helm.sh path kubectl)" || die "kubectl not found: install kubectl (https://kubernetes.io/docs/tasks/tools/)"
HELM="$(scripts/helm.sh path helm)" || die "helm not found: install helm (https://helm.sh/docs/intro/install/)"
for port in "$PROVISIONER_PORT" "$OPS_MANAGER_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use: set PROVISIONER_PORT / OPS_MANAGER_PORT"
  fi
done

say "building testkit-apiserver and both operators"
"$CARGO" build -q -p testkit --bin testkit-apiserver -p pgpool-provisioner -p pgpool-ops-manager --bins
TARGET_DIR="$("$CARGO" metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET_DIR/debug"

rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"
PIDS=()
cleanup() {
  local status=$?
  # Operators first (they release their Leases), the API server last.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in apiserver provisioner ops-manager; do
      echo "----- $log (last 40 lines of $STATE_DIR/$log.log) -----" >&2
      tail -n 40 "$STATE_DIR/$log.log" >&2 || true
    done
  fi
}
trap cleanup EXIT

# Waits up to $2 seconds for command $1 (a function name) to succeed.
wait_for() {
  local check="$1" seconds="$2" i
  for ((i = 0; i < seconds * 5; i++)); do
    if "$check"; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

"$BIN/testkit-apiserver" --no-kubelet --kubeconfig "$KUBECONFIG_FILE" \
  --crds charts/pgpool-provisioner/crds --crds charts/pgpool-ops-manager/crds >"$STATE_DIR/apiserver.log" 2>&1 &
PIDS+=("$!")
kubeconfig_written() { [ -s "$KUBECONFIG_FILE" ] && grep -q '^listening on' "$STATE_DIR/apiserver.log"; }
wait_for kubeconfig_written 30 || die "testkit-apiserver did not start"
say "API server: $(head -n 1 "$STATE_DIR/apiserver.log")"

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
# testkit serves no OpenAPI document, hence --validate=false.
kc apply --validate=false -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: pgpool-system
YAML
kc apply --validate=false -f e2e/manifests/ >/dev/null
# The chart's catalog ConfigMap, as the chart installs it; the provisioner applies the
# PgpoolVersions in it itself (--catalog-file), as in a cluster.
"$HELM" template pgpool-provisioner charts/pgpool-provisioner --namespace pgpool-system \
  --show-only templates/catalog.yaml >"$STATE_DIR/catalog-configmap.yaml"
kc apply --validate=false -f "$STATE_DIR/catalog-configmap.yaml" >/dev/null
kc get configmap pgpool-provisioner-catalog -n pgpool-system \
  -o 'jsonpath={.data.catalog\.yaml}' >"$STATE_DIR/catalog.yaml"
say "applied e2e/manifests/ and the chart's catalog ConfigMap"

start_operator() {
  local binary="$1" port="$2" pod="$3"
  shift 3
  KUBECONFIG="$KUBECONFIG_FILE" POD_NAME="$pod" POD_NAMESPACE=pgpool-system \
    "$BIN/$binary" --leader-elect=true --log-level=info,pgpool_provisioner=debug,pgpool_ops_manager=debug \
    --metrics-bind-address "127.0.0.1:$port" "$@" >"$STATE_DIR/${binary#pgpool-}.log" 2>&1 &
  PIDS+=("$!")
}
start_operator pgpool-provisioner "$PROVISIONER_PORT" provisioner-local-0 \
  --catalog-file "$STATE_DIR/catalog.yaml"
start_operator pgpool-ops-manager "$OPS_MANAGER_PORT" ops-manager-local-0
both_ready() {
  curl -fsS "http://127.0.0.1:$PROVISIONER_PORT/readyz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$OPS_MANAGER_PORT/readyz" >/dev/null 2>&1
}
wait_for both_ready 60 || die "the operators did not become ready within 60 s"
catalog_applied() { kc get pgpoolversion 4.5.3 4.6.0 >/dev/null 2>&1; }
wait_for catalog_applied 60 || die "the provisioner did not apply the catalog within 60 s"
say "both operators ready, catalog applied by the provisioner"

say "running the e2e scenario (E2E=1 E2E_SIMULATE_KUBELET=1)"
E2E=1 E2E_SIMULATE_KUBELET=1 KUBECONFIG="$KUBECONFIG_FILE" \
  E2E_PROVISIONER_METRICS_URL="http://127.0.0.1:$PROVISIONER_PORT/metrics" \
  E2E_OPS_MANAGER_METRICS_URL="http://127.0.0.1:$OPS_MANAGER_PORT/metrics" \
  "$CARGO" test -p e2e --test update_version -- --nocapture --test-threads=1
