#!/usr/bin/env bash
# Deletes the kind clusters made by up.sh. The CA folder (CAUSEWAY_E2E_WORK, default
# /tmp/causeway-kind) is kept unless --purge is given.
set -euo pipefail

command -v kind >/dev/null || { echo "down.sh needs kind on PATH" >&2; exit 1; }
for c in west east north; do
  if kind get clusters | grep -qx "causeway-$c"; then
    kind delete cluster --name "causeway-$c"
  fi
done
if [ "${1:-}" = "--purge" ]; then
  rm -rf "${CAUSEWAY_E2E_WORK:-/tmp/causeway-kind}"
fi
