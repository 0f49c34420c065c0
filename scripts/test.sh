#!/usr/bin/env bash
# Runs every check Causeway's CI runs: system packages the tests use, formatting,
# lints, then all tests of the workspace. Safe to run on a fresh Debian machine as
# root; elsewhere it skips the package step and tests that need a missing tool say so.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests call: openssl (certificate interop), dig (DNS), iproute2 and
# nftables (network-namespace end-to-end tests), curl (HTTP checks), shellcheck
# (e2e/kind/run.sh lint), python3 and pip (the aioquic QUIC client of
# tunnel/tests/hostile_quic.rs).
packages=(openssl bind9-dnsutils iproute2 nftables curl ca-certificates shellcheck python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not installing (${missing[*]}): not root or no apt-get; tests that need them will skip"
  fi
fi

# Installs PACKAGE==VERSION with pip unless that version is there.
pip_pinned() {
  local package=$1 version=$2
  if python3 -m pip show "$package" 2>/dev/null | grep -qx "Version: $version"; then
    return
  fi
  if [[ $(id -u) -eq 0 ]] && command -v python3 >/dev/null; then
    echo "installing: $package==$version"
    python3 -m pip install --quiet --disable-pip-version-check "$package==$version" \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$package==$version"
  else
    echo "not installing $package: not root or no python3; tests that need it will skip"
  fi
}
# A QUIC implementation no one here wrote, pinned, for the foreign-client test.
pip_pinned aioquic 1.2.0
# The Kubernetes API's own schemas, offline, for the install manifests
# (k8s/tests/install.rs).
pip_pinned kubernetes-validate 1.37.0
# Under pyenv, `python3 -m pip` adds no shim for a new script; make one.
if command -v pyenv >/dev/null; then pyenv rehash || true; fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
