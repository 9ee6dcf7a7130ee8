#!/usr/bin/env bash
# Chart checks (`make charts-check`):
#   1. `helm lint --strict` of each chart with its default values and with each
#      charts/<chart>/ci/<case>-values.yaml;
#   2. `helm template` of the same cases into $CHARTS_RENDERED_DIR/<chart>/<case>.yaml
#      (default .cache/charts-rendered), release name = chart name, namespace pgpool-system;
#   3. values that must be refused are refused (replicaCount 2 without leader election, an
#      unknown log format);
#   4. each binary accepts the command line its rendered Deployment gives it;
#   5. the Rust test e2e/tests/charts.rs parses every rendered manifest into its Kubernetes
#      type (a misspelled field fails) and checks RBAC, security context, probes and values.
# helm comes from PATH or is installed into .cache/tools by scripts/helm.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
NAMESPACE=pgpool-system
OUT="${CHARTS_RENDERED_DIR:-$ROOT/.cache/charts-rendered}"
CHARTS=(pgpool-provisioner pgpool-ops-manager)

HELM="$(scripts/helm.sh path helm)"
echo "charts-check: $("$HELM" version --short 2>/dev/null || echo "$HELM")"

rm -rf "$OUT"
mkdir -p "$OUT"

for chart in "${CHARTS[@]}"; do
  dir="charts/$chart"
  cases=("default:")
  for values in "$dir"/ci/*-values.yaml; do
    [ -e "$values" ] || continue
    name="$(basename "$values" -values.yaml)"
    cases+=("$name:$values")
  done
  mkdir -p "$OUT/$chart"
  for case in "${cases[@]}"; do
    name="${case%%:*}"
    values="${case#*:}"
    args=()
    [ -n "$values" ] && args=(--values "$values")
    echo "charts-check: $chart ($name): lint"
    "$HELM" lint --strict "$dir" --namespace "$NAMESPACE" "${args[@]}" >"$OUT/$chart/$name.lint" 2>&1 || {
      cat "$OUT/$chart/$name.lint" >&2
      echo "charts-check: helm lint failed for $chart ($name)" >&2
      exit 1
    }
    "$HELM" template "$chart" "$dir" --namespace "$NAMESPACE" "${args[@]}" >"$OUT/$chart/$name.yaml"
    echo "charts-check: $chart ($name): rendered $(grep -c '^kind:' "$OUT/$chart/$name.yaml") objects into $OUT/$chart/$name.yaml"
  done

  # Values the chart must refuse.
  refused=(
    "--set replicaCount=2 --set leaderElection.enabled=false"
    "--set logFormat=xml"
  )
  for set in "${refused[@]}"; do
    # shellcheck disable=SC2086
    if "$HELM" template "$chart" "$dir" --namespace "$NAMESPACE" $set >/dev/null 2>&1; then
      echo "charts-check: $chart accepted $set, which it must refuse" >&2
      exit 1
    fi
  done
  echo "charts-check: $chart refuses ${#refused[@]} bad value combinations"
done

# The command line each rendered Deployment gives its binary must parse: run the binary with
# those arguments and --help last (clap rejects an unknown flag or a bad value before it
# gets to --help).
echo "charts-check: building both binaries to check the rendered command lines"
"$CARGO" build -q -p pgpool-provisioner -p pgpool-ops-manager --bins
TARGET_DIR="$("$CARGO" metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
for chart in "${CHARTS[@]}"; do
  for rendered in "$OUT/$chart"/*.yaml; do
    args=()
    while IFS= read -r line; do
      arg="${line#*- }"
      arg="${arg#\"}"
      arg="${arg%\"}"
      args+=("$arg")
    done < <(sed -n '/^kind: Deployment$/,/^---$/p' "$rendered" | grep -E '^ +- "--')
    [ "${#args[@]}" -gt 0 ] || { echo "charts-check: no arguments found in $rendered" >&2; exit 1; }
    if ! out="$("$TARGET_DIR/debug/$chart" "${args[@]}" --help 2>&1 >/dev/null)"; then
      echo "charts-check: $chart rejects the arguments of $rendered: ${args[*]}" >&2
      echo "$out" >&2
      exit 1
    fi
    echo "charts-check: $chart accepts the ${#args[@]} arguments of $(basename "$rendered")"
  done
done

echo "charts-check: parsing every rendered manifest (e2e/tests/charts.rs)"
CHARTS_RENDERED_DIR="$OUT" HELM="$HELM" "$CARGO" test -p e2e --test charts -- --test-threads=2
