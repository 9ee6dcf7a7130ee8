#!/usr/bin/env bash
# Installs real pgpool-II binaries of the lines that Debian's stable suite does not ship, for
# the real-pgpool test matrix (crates/provisioner/tests/real_pgpool/), next to the 4.3.x that
# scripts/install-pgpool-test-deps.sh installs with apt:
#
#   .cache/pgpool/4.6/   package pgpool2 of suite trixie
#   .cache/pgpool/4.7/   package pgpool2 of suite forky (Debian testing: whatever 4.7.x it has)
#
# Each folder holds pgpool2 and the shared libraries it needs (glibc included), unpacked with
# `dpkg-deb -x`, a VERSION file with the exact package version, and wrappers bin/pgpool and
# bin/pcp_* that run the binary through the folder's own dynamic loader, so the newer suite's
# binaries run on an older system unchanged.
#
# The packages are fetched by apt itself, with a private apt directory (own sources list,
# state and cache) whose mirror is taken from this machine's apt configuration.
#
# Idempotent: does nothing but print one line when every line is installed. Prints one line.
# When it cannot install: with CI=true it prints apt's log and exits 1, otherwise it prints
# one skip line and exits 0 (the test then skips those versions outside CI).
set -euo pipefail
cd "$(dirname "$0")/.."

# line suite
LINES=("4.6 trixie" "4.7 forky")
ROOT="$PWD/.cache/pgpool"
TAG="install-pgpool-versions"
# the pcp tools the tests run (bin/pcp_<name>); pgpool itself is always wrapped
PCP_TOOLS=(pcp_node_count pcp_node_info pcp_pool_status pcp_reload_config)

in_ci() {
  case "${CI:-}" in
  "" | false | 0) return 1 ;;
  *) return 0 ;;
  esac
}

# Fails the way the environment asks: loudly in CI, with one skip line elsewhere.
give_up() {
  local reason="$1" log="${2:-}"
  if in_ci; then
    if [ -n "$log" ] && [ -f "$log" ]; then
      cat "$log" >&2
    fi
    echo "$TAG: $reason" >&2
    exit 1
  fi
  echo "$TAG: skipping: $reason (the real-pgpool test skips the versions it does not find)"
  exit 0
}

# Whether .cache/pgpool/<line> holds a working installation of that line.
installed() {
  local dir="$ROOT/$1" tool
  [ -s "$dir/VERSION" ] || return 1
  for tool in pgpool "${PCP_TOOLS[@]}"; do
    [ -x "$dir/bin/$tool" ] || return 1
  done
  "$dir/bin/pgpool" --version 2>&1 | grep -q "pgpool-II version $1\."
}

summary() {
  local out=() spec line suite
  for spec in "${LINES[@]}"; do
    read -r line suite <<<"$spec"
    out+=("$(cat "$ROOT/$line/VERSION") ($suite)")
  done
  local IFS=,
  echo "${out[*]}" | sed 's/,/, /g'
}

missing=()
for spec in "${LINES[@]}"; do
  read -r line _ <<<"$spec"
  installed "$line" || missing+=("$spec")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$TAG: pgpool-II $(summary) already in .cache/pgpool"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || give_up "$tool not found"
done

# The machine's Debian mirror and the keyring that signs it: the first entry of a main suite
# (no -updates/-security) in the deb822 sources, else in the one-line sources.list.
MIRROR=""
KEYRING=""
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # prints "uri keyring" for the first stanza of type deb with a plain suite name
    read -r MIRROR KEYRING < <(awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && uri != "" && plain) { print uri, (key == "" ? "-" : key); found = 1; exit }
        types = ""; uri = ""; key = ""; plain = 0
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { types = substr($0, index($0, ":") + 1) }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "signed-by:" { key = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /[-\/]/) plain = 1 }
      END { if (!found) flush() }
    ' "$f") || true
    [ -n "$MIRROR" ] && return 0
  done
  if [ -f /etc/apt/sources.list ]; then
    # deb [options] uri suite components...
    read -r MIRROR KEYRING < <(awk '
      $1 == "deb" {
        i = 2; key = "-"
        if ($i ~ /^\[/) {
          while (i <= NF) {
            if ($i ~ /signed-by=/) { key = $i; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) }
            if ($i ~ /\]$/) { i++; break }
            i++
          }
        }
        if ($(i + 1) !~ /[-\/]/) { print $i, key; exit }
      }
    ' /etc/apt/sources.list) || true
  fi
  [ -n "$MIRROR" ]
}
find_mirror || give_up "no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
[ "$KEYRING" = "-" ] && KEYRING=""

# Downloads and unpacks one line; all output goes to the caller's log.
install_line() {
  local line="$1" suite="$2"
  local apt="$ROOT/apt/$suite" dest="$ROOT/$line" stage="$ROOT/.$line.stage"
  rm -rf "$apt" "$stage"
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/sources.d" "$apt/preferences.d" "$stage"
  : >"$apt/status"
  {
    echo "Types: deb"
    echo "URIs: $MIRROR"
    echo "Suites: $suite"
    echo "Components: main"
    [ -n "$KEYRING" ] && echo "Signed-By: $KEYRING"
  } >"$apt/sources.d/$suite.sources"
  local opts=(
    -o "Dir::Etc::SourceList=$apt/none.list"
    -o "Dir::Etc::SourceParts=$apt/sources.d"
    -o "Dir::Etc::Preferences=$apt/none.pref"
    -o "Dir::Etc::PreferencesParts=$apt/preferences.d"
    -o "Dir::State=$apt"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::status=$apt/status"
    -o "Dir::Cache=$apt"
    -o "Dir::Cache::archives=$apt/archives"
    -o "Dir::Cache::pkgcache=$apt/pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=$apt/srcpkgcache.bin"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
    -o "Acquire::Languages=none"
  )
  echo "== apt-get update ($suite from $MIRROR)"
  apt-get "${opts[@]}" -q update

  # The dependency closure of pgpool2 over Depends/Pre-Depends, following only shared
  # library packages (lib*, zlib1g): debconf, ucf, perl-base and the like are not needed to
  # run the binaries. Of alternatives the first is taken; a virtual package by its first
  # provider.
  local want=(pgpool2) seen=" " next pkg
  while [ "${#want[@]}" -gt 0 ]; do
    for pkg in "${want[@]}"; do seen+="$pkg "; done
    mapfile -t next < <(apt-cache "${opts[@]}" depends --important "${want[@]}" | awk '
      /^[^ ]/ { alt = 0; virt = 0; next }
      /^    / { if (virt) { print $1; virt = 0 } next }
      {
        skip = alt
        alt = ($0 ~ /^ \|/)
        if (skip) next
        name = $2
        if (name ~ /^</) { gsub(/[<>]/, "", name); if (name ~ /^(lib|zlib1g)/) virt = 1; next }
        print name
      }
    ' | grep -E '^(lib|zlib1g)' | sort -u)
    want=()
    for pkg in "${next[@]}"; do
      pkg="${pkg%%:*}"
      [[ "$seen" == *" $pkg "* ]] || want+=("$pkg")
    done
  done
  read -r -a pkgs <<<"$seen"
  echo "== apt-get download ${pkgs[*]}"
  (cd "$apt/archives" && apt-get "${opts[@]}" -q download "${pkgs[@]}")

  local deb
  for deb in "$apt"/archives/*.deb; do
    dpkg-deb -x "$deb" "$stage"
  done
  local version
  version="$(dpkg-deb -f "$apt"/archives/pgpool2_*.deb Version)"
  echo "$version" >"$stage/VERSION"

  # merged-/usr suites ship the loader under usr/lib64 and the libraries under usr/lib
  local loader d
  loader=""
  for d in lib64 usr/lib64 lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
    if [ -e "$stage/$d/ld-linux-x86-64.so.2" ]; then
      loader="$d/ld-linux-x86-64.so.2"
      break
    fi
  done
  [ -n "$loader" ] || {
    echo "no ld-linux-x86-64.so.2 in the unpacked libc6"
    return 1
  }
  if [ ! -e "$stage/lib64/ld-linux-x86-64.so.2" ]; then
    mkdir -p "$stage/lib64"
    ln -sf "../$loader" "$stage/lib64/ld-linux-x86-64.so.2"
  fi
  local libdirs=()
  for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
    [ -d "$stage/$d" ] && libdirs+=("$d")
  done

  mkdir -p "$stage/bin"
  local tool
  for tool in pgpool "${PCP_TOOLS[@]}"; do
    [ -x "$stage/usr/sbin/$tool" ] || {
      echo "pgpool2 $version has no usr/sbin/$tool"
      return 1
    }
    {
      echo '#!/bin/sh'
      echo "# pgpool-II $version ($suite) through its own suite's loader and libraries."
      echo "# Written by scripts/install-pgpool-versions.sh."
      echo 'here="$(cd "$(dirname "$0")/.." && pwd)"'
      local path="" sep=""
      for d in "${libdirs[@]}"; do
        path+="$sep\$here/$d"
        sep=":"
      done
      echo "exec \"\$here/lib64/ld-linux-x86-64.so.2\" --library-path \"$path\" \"\$here/usr/sbin/$tool\" \"\$@\""
    } >"$stage/bin/$tool"
    chmod 755 "$stage/bin/$tool"
  done
  # the servers run as another user than the installer in the test
  chmod -R a+rX "$stage"

  "$stage/bin/pgpool" --version
  "$stage/bin/pgpool" --version 2>&1 | grep -q "pgpool-II version $line\." || {
    echo "pgpool2 of $suite is not a $line.x release"
    return 1
  }
  rm -rf "$dest"
  mv "$stage" "$dest"
  rm -rf "$apt"
  rmdir "$ROOT/apt" 2>/dev/null || true
}

start=$SECONDS
mkdir -p "$ROOT"
logs=()
pids=()
for spec in "${missing[@]}"; do
  read -r line suite <<<"$spec"
  log="$ROOT/install-$line.log"
  logs+=("$log")
  install_line "$line" "$suite" >"$log" 2>&1 &
  pids+=("$!")
done
failed=""
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    read -r line suite <<<"${missing[$i]}"
    rm -rf "$ROOT/.$line.stage"
    failed="${logs[$i]}"
    reason="installing pgpool2 $line.x from $suite failed, see ${failed#"$PWD/"}"
  fi
done
if [ -n "$failed" ]; then
  give_up "$reason" "$failed"
fi
rm -f "${logs[@]}"
echo "$TAG: installed pgpool-II $(summary) into .cache/pgpool in $((SECONDS - start))s"
