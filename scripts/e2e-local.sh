#!/usr/bin/env bash
# The UpdateVersion-under-load scenario on one machine with real processes: testkit's API
# server, both operator binaries, the local node (crates/local-node: pods as real processes,
# ClusterIPs routed on the host), a real PostgreSQL started here as the `postgres` user, and
# e2e/tests/update_under_load.rs driving a 3-replica Pgpool through 4.3.5 -> 4.6.1 -> 4.7.3
# and a crashing update under client load, then e2e/tests/day2_operations.rs applying the
# day-2 example requests to a 2-replica Pgpool under load, then e2e/tests/tls_under_load.rs
# updating a TLS Pgpool (built-in CA, sslMode require) 4.6.1 -> 4.7.3, then rotating its
# certificates with a ReconfigureTLS, under a load client that
# connects over TLS; at the end both operators' logs are searched for private keys.
#
# Needs root (network namespaces, and PostgreSQL runs as `postgres`), cargo, curl, kubectl
# (from PATH or .cache/tools via scripts/helm.sh), Debian's postgresql and pgpool2 and the
# 4.6/4.7 binaries (the script installs the last three: scripts/install-pgpool-test-deps.sh,
# scripts/install-pgpool-versions.sh).
#
# Environment:
#   HOST_IP            the host's address on the local node's pod bridge, where pods reach
#                      PostgreSQL (default 10.244.0.1, the gateway of local-node's default
#                      pod network)
#   PG_PORT            PostgreSQL's port on the host (default 15432)
#   LOCAL_NODE_ARGS    extra local-node arguments (e.g. --propagation-delay 2s)
#   PROVISIONER_PORT / OPS_MANAGER_PORT   metrics ports on 127.0.0.1 (18080 / 18081)
#   E2E_MAX_POD_RESTART_SECONDS  fail when a successful update takes longer than this to
#                      replace a pod (default 25; a pod that waits out its 30 s grace period
#                      instead of shutting down after the preStop drain takes about 36)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
PG_PORT="${PG_PORT:-15432}"
PROVISIONER_PORT="${PROVISIONER_PORT:-18080}"
OPS_MANAGER_PORT="${OPS_MANAGER_PORT:-18081}"
STATE_DIR="$ROOT/.cache/e2e-local"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"

say() { echo "e2e-local: $*"; }
die() {
  echo "e2e-local: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root: pods get their own namespaces, PostgreSQL runs as postgres"
id postgres >/dev/null 2>&1 || die "no postgres user: run scripts/install-pgpool-test-deps.sh"
KUBECTL="$(scripts/helm.sh path kubectl)" || die "kubectl not found: install kubectl, or run scripts/helm.sh install"
scripts/install-pgpool-test-deps.sh
CI="${CI:-true}" scripts/install-pgpool-versions.sh
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

say "building testkit-apiserver, both operators and local-node"
"$CARGO" build -q -p testkit --bin testkit-apiserver -p pgpool-provisioner -p pgpool-ops-manager \
  -p local-node --bins
TARGET_DIR="$("$CARGO" metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET_DIR/debug"

rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR"
# PostgreSQL's files live where the postgres user can reach them whatever the clone's folder
PG_DIR="$(mktemp -d /tmp/e2e-local-pg.XXXXXX)"
chown postgres: "$PG_DIR"
PIDS=()
cleanup() {
  local status=$? i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    for log in apiserver local-node provisioner ops-manager; do
      echo "----- $log (last 40 lines of $STATE_DIR/$log.log) -----" >&2
      tail -n 40 "$STATE_DIR/$log.log" >&2 || true
    done
    echo "----- postgres -----" >&2
    tail -n 20 "$PG_DIR/postgres.log" >&2 || true
  fi
  rm -rf "$PG_DIR"
}
trap cleanup EXIT

wait_for() {
  local check="$1" seconds="$2" i
  for ((i = 0; i < seconds * 5; i++)); do
    if "$check"; then return 0; fi
    sleep 0.2
  done
  return 1
}

# 1. the API server
"$BIN/testkit-apiserver" --no-kubelet --kubeconfig "$KUBECONFIG_FILE" \
  --crds charts/pgpool-provisioner/crds --crds charts/pgpool-ops-manager/crds >"$STATE_DIR/apiserver.log" 2>&1 &
PIDS+=("$!")
kubeconfig_written() { [ -s "$KUBECONFIG_FILE" ] && grep -q '^listening on' "$STATE_DIR/apiserver.log"; }
wait_for kubeconfig_written 30 || die "testkit-apiserver did not start"
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# 2. the local node: binds pods, runs them, routes ClusterIPs
read -r -a extra_node_args <<<"${LOCAL_NODE_ARGS:-}"
"$BIN/local-node" --kubeconfig "$KUBECONFIG_FILE" --node-name local-0 \
  --images "$ROOT/e2e/local-images.yaml" --state-dir "$STATE_DIR/node" \
  "${extra_node_args[@]}" >"$STATE_DIR/local-node.log" 2>&1 &
PIDS+=("$!")
HOST_IP="${HOST_IP:-10.244.0.1}"

# 3. PostgreSQL as postgres, listening on every address (the bridge's too, whenever the node
#    creates it), with the Secret's password
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$PG_DIR/data/postgresql.conf" <<EOF
listen_addresses = '*'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
max_connections = 200
EOF
# pods connect from the bridge: any address, with a password
echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PG_DIR/data/pg_hba.conf"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w start >/dev/null
runuser -u postgres -- "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -qAtc \
  "ALTER ROLE postgres PASSWORD 'e2e-only-not-a-secret'" >/dev/null
say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $HOST_IP:$PG_PORT"

# 4. the backend's Secret, Service without selector and its EndpointSlice; the AppBinding
kc apply --validate=false -f e2e/manifests/00-namespace.yaml >/dev/null
kc apply --validate=false -f e2e/manifests/local/backend.yaml -f e2e/manifests/appbinding.yaml >/dev/null
kc apply --validate=false -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ha-postgres-host
  namespace: demo
  labels:
    kubernetes.io/service-name: ha-postgres
addressType: IPv4
ports:
  - name: postgres
    port: $PG_PORT
    protocol: TCP
endpoints:
  - addresses: ["$HOST_IP"]
    conditions:
      ready: true
EOF
printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pgpool-system\n' | kc apply --validate=false -f - >/dev/null

# 5. both operators
start_operator() {
  local binary="$1" port="$2" pod="$3"
  KUBECONFIG="$KUBECONFIG_FILE" POD_NAME="$pod" POD_NAMESPACE=pgpool-system \
    "$BIN/$binary" --leader-elect=true --metrics-bind-address "127.0.0.1:$port" \
    >"$STATE_DIR/${binary#pgpool-}.log" 2>&1 &
  PIDS+=("$!")
}
start_operator pgpool-provisioner "$PROVISIONER_PORT" provisioner-local-0
start_operator pgpool-ops-manager "$OPS_MANAGER_PORT" ops-manager-local-0
both_ready() {
  curl -fsS "http://127.0.0.1:$PROVISIONER_PORT/readyz" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:$OPS_MANAGER_PORT/readyz" >/dev/null 2>&1
}
wait_for both_ready 60 || die "the operators did not become ready within 60 s"

# 6. the scenarios (E2E_LOCAL_SCENARIOS, default all: "update day2 tls"); the load client
#    reaches the Pgpool Service's ClusterIP from the host
SCENARIOS=" ${E2E_LOCAL_SCENARIOS:-update day2 tls} "
wants() { [[ "$SCENARIOS" == *" $1 "* ]]; }
if wants update; then
say "running update_under_load (3 replicas, 4.3.5 -> 4.6.1 -> 4.7.3, then a crashing image)"
# a pod replaced in more than 25 s waited out its grace period (about 11 s is usual here)
E2E=1 E2E_LOAD=1 KUBECONFIG="$KUBECONFIG_FILE" E2E_MAX_POD_RESTART_SECONDS="${E2E_MAX_POD_RESTART_SECONDS:-25}" \
  E2E_PROVISIONER_METRICS_URL="http://127.0.0.1:$PROVISIONER_PORT/metrics" \
  E2E_OPS_MANAGER_METRICS_URL="http://127.0.0.1:$OPS_MANAGER_PORT/metrics" \
  "$CARGO" test -p e2e --test update_under_load -- --nocapture --test-threads=1
fi

# 7. day-2 operations on the examples' Pgpool (2 replicas, under load): each example request
#    applied unchanged and Successful, spec / PetSet / pods agreeing, no failed query
if wants day2; then
say "running day2_operations (HorizontalScaling 2 -> 3, VerticalScaling, Reconfigure, RotateAuth)"
E2E=1 E2E_LOAD=1 KUBECONFIG="$KUBECONFIG_FILE" E2E_MAX_POD_RESTART_SECONDS="${E2E_MAX_POD_RESTART_SECONDS:-25}" \
  "$CARGO" test -p e2e --test day2_operations -- --nocapture --test-threads=1
fi

# 8. TLS: a Pgpool with spec.tls {} (built-in CA) and sslMode require, updated 4.6.1 -> 4.7.3
#    under a load client on TLS (verify-full against <name>-ca); plain text refused; the test
#    searches both operators' logs for the Secrets' tls.key
if wants tls; then
say "running tls_under_load (TLS Pgpool, 2 replicas, 4.6.1 -> 4.7.3 and a certificate rotation under load over TLS)"
OPERATOR_LOGS="$STATE_DIR/provisioner.log:$STATE_DIR/ops-manager.log"
E2E=1 E2E_LOAD=1 KUBECONFIG="$KUBECONFIG_FILE" E2E_MAX_POD_RESTART_SECONDS="${E2E_MAX_POD_RESTART_SECONDS:-25}" \
  E2E_OPERATOR_LOGS="$OPERATOR_LOGS" \
  "$CARGO" test -p e2e --test tls_under_load -- --nocapture --test-threads=1
fi

# 9. no private key in the operators' output of the whole run (the test above also looked for
#    the TLS Pgpool's own keys, base64 and PEM lines)
if grep -l 'PRIVATE KEY' "$STATE_DIR/provisioner.log" "$STATE_DIR/ops-manager.log" >&2; then
  die "a private key in the operators' output (files above)"
fi
say "no PRIVATE KEY in the operators' output"
