#!/usr/bin/env bash
# Installs Debian's pgpool2 and postgresql packages for the test that runs the real
# pgpool-II (crates/provisioner/tests/real_pgpool/). Idempotent and quiet: does nothing
# when the binaries are already there, prints one line when it installs.
set -euo pipefail

have_all() {
  command -v pgpool >/dev/null 2>&1 || [ -x /usr/sbin/pgpool ] || return 1
  command -v pcp_node_count >/dev/null 2>&1 || [ -x /usr/sbin/pcp_node_count ] || return 1
  command -v psql >/dev/null 2>&1 || return 1
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || return 1
}

if have_all; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-pgpool-test-deps: need root (or sudo) to install pgpool2 and postgresql" >&2
  exit 1
fi

echo "install-pgpool-test-deps: installing pgpool2 and postgresql from Debian"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! {
  "${SUDO[@]}" apt-get update -qq &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgpool2 postgresql
} >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-pgpool-test-deps: apt-get failed" >&2
  exit 1
fi

if ! have_all; then
  echo "install-pgpool-test-deps: packages installed but binaries not found" >&2
  exit 1
fi
