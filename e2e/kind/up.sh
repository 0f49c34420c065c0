#!/usr/bin/env bash
# Three kind clusters (west, east, north) federated by Causeway.
#
# Needs Docker, kind and kubectl. Creates the clusters from kind-configs/, builds the
# causeway image and loads it into each, creates one trust domain with an issuer per
# cluster, installs a gateway in each with `causeway install | kubectl apply -f -`, and
# links east and north to west's registry. Tear down with down.sh.
#
# Environment: CAUSEWAY_IMAGE (default causeway:e2e), CAUSEWAY_E2E_WORK (default a
# folder under /tmp that keeps the CA and issuers; delete it after down.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
clusters=(west east north)
image="${CAUSEWAY_IMAGE:-causeway:e2e}"
work="${CAUSEWAY_E2E_WORK:-/tmp/causeway-kind}"
namespace="causeway-system"
registry_port=15444
tunnel_port=15443

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "up.sh needs $tool on PATH" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "up.sh needs a running Docker engine" >&2; exit 1; }

ctx() { echo "kind-causeway-$1"; }

echo "== clusters"
for c in "${clusters[@]}"; do
  if kind get clusters | grep -qx "causeway-$c"; then
    echo "causeway-$c exists"
  else
    kind create cluster --config "$repo/kind-configs/$c.yaml" --wait 120s
  fi
done

echo "== image $image"
docker build -f "$here/Dockerfile" -t "$image" "$repo"
for c in "${clusters[@]}"; do
  kind load docker-image "$image" --name "causeway-$c"
done

echo "== trust: one root, an issuer per cluster (in $work)"
cargo build --release -p causeway-gateway --manifest-path "$repo/Cargo.toml"
causeway="$repo/target/release/causeway"
[ -n "${CARGO_TARGET_DIR:-}" ] && causeway="$CARGO_TARGET_DIR/release/causeway"
mkdir -p "$work"
[ -f "$work/ca/root.pem" ] || "$causeway" trust init --out "$work/ca"
for c in "${clusters[@]}"; do
  [ -f "$work/$c/issuer.pem" ] || "$causeway" trust issue-cluster --cluster "$c" --ca "$work/ca" --out "$work/$c"
done

# Gateways reach each other on their node's address on the kind Docker network,
# through NodePorts that `causeway install` is asked to expose on the same numbers.
node_ip() {
  docker inspect -f '{{ .NetworkSettings.Networks.kind.IPAddress }}' "causeway-$1-control-plane"
}

echo "== install"
for c in "${clusters[@]}"; do
  ip="$(node_ip "$c")"
  kubectl --context "$(ctx "$c")" create namespace "$namespace" --dry-run=client -o yaml |
    kubectl --context "$(ctx "$c")" apply -f -
  kubectl --context "$(ctx "$c")" -n "$namespace" create secret generic causeway-issuer \
    --from-file="$work/$c/issuer.pem" --from-file="$work/$c/issuer.key" --from-file="$work/$c/bundle.pem" \
    --dry-run=client -o yaml | kubectl --context "$(ctx "$c")" apply -f -
  "$causeway" install \
    --cluster "$c" \
    --namespace "$namespace" \
    --image "$image" \
    --issuer-secret causeway-issuer \
    --advertise-registry "$ip:$registry_port" \
    --advertise-tunnel "$ip:$tunnel_port" \
    --node-port |
    kubectl --context "$(ctx "$c")" apply -f -
done
for c in "${clusters[@]}"; do
  kubectl --context "$(ctx "$c")" -n "$namespace" rollout status deploy/causeway-gateway --timeout=180s
done

echo "== link east and north to west"
west_registry="$(node_ip west):$registry_port"
for c in east north; do
  kubectl --context "$(ctx "$c")" -n "$namespace" exec deploy/causeway-gateway -- \
    causeway link --peer "$west_registry"
done

echo "== check"
for c in "${clusters[@]}"; do
  kubectl --context "$(ctx "$c")" -n "$namespace" exec deploy/causeway-gateway -- causeway check
done
echo "up: contexts $(for c in "${clusters[@]}"; do printf '%s ' "$(ctx "$c")"; done)"
