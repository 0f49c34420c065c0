#!/usr/bin/env bash
# Causeway on three kind clusters (west, east, north), end to end.
#
#   e2e/kind/run.sh            create, install, link, export, and check traffic
#   e2e/kind/run.sh --dry-run  print every command instead of running it
#   e2e/kind/run.sh --down     delete the clusters (the CA folder is kept)
#
# Needs Docker, kind, kubectl and cargo; --dry-run needs none of them. No Docker
# engine or Kubernetes API server runs on Causeway's development machines, so this
# script (and the image built from the root Dockerfile) runs only on machines with
# Docker and kind; CI checks it with shellcheck and a dry run.
#
# Steps: create the clusters from kind-configs/; build the image (root Dockerfile)
# and `kind load` it; make one root CA and an issuer per cluster with
# `causeway trust`; `causeway install --trust-from ... | kubectl apply -f -` in each
# cluster, with the gateway's tunnel and registry on NodePorts of the node's address
# on the kind network; point CoreDNS's clusterset.local at the gateway; link east
# and north to west (ClusterLinks from `causeway link --name`); run an echo service
# demo/web in west and east and export it; then ask for
# http://web.demo.svc.clusterset.local from a pod in north until it answers.
#
# Environment: CAUSEWAY_IMAGE (default causeway:e2e), CAUSEWAY_E2E_WORK (default
# /tmp/causeway-kind: the CA and issuers; delete it after --down).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
clusters=(west east north)
exporters=(west east)
seed=west
image="${CAUSEWAY_IMAGE:-causeway:e2e}"
work="${CAUSEWAY_E2E_WORK:-/tmp/causeway-kind}"
namespace="causeway-system"
tunnel_node_port=30443
registry_node_port=30444
curl_image=curlimages/curl:8.10.1
timeout_seconds=300

dry_run=0
mode=up
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --down) mode=down ;;
    -h | --help)
      sed -n '2,8p' "$0"
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

# Runs a command, or prints it (shell-quoted) with --dry-run.
run() {
  if ((dry_run)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Applies what a command prints to a cluster: `cmd ... | kubectl apply -f -`. With
# --dry-run, a shell function's output (a manifest written here) is shown in full.
apply_from() {
  local context="$1"
  shift
  if ((dry_run)) && declare -F "$1" >/dev/null; then
    printf '+ kubectl --context %q apply -f - <<EOF\n' "$context"
    "$@"
    printf 'EOF\n'
  elif ((dry_run)); then
    printf '+'
    printf ' %q' "$@"
    printf ' | kubectl --context %q apply -f -\n' "$context"
  else
    "$@" | kubectl --context "$context" apply -f -
  fi
}

ctx() { echo "kind-causeway-$1"; }

step() { echo "== $*"; }

# The node's address on the kind Docker network, where the NodePorts are.
node_ip() {
  if ((dry_run)); then
    echo "<$1-node-ip>"
  else
    docker inspect -f '{{ .NetworkSettings.Networks.kind.IPAddress }}' "causeway-$1-control-plane"
  fi
}

cluster_exists() {
  ((dry_run)) && return 1
  kind get clusters 2>/dev/null | grep -qx "causeway-$1"
}

# Waits until a command succeeds, up to $timeout_seconds. With --dry-run the
# command runs once, printing what it would run.
wait_for() {
  local what="$1"
  shift
  if ((dry_run)); then
    echo "+ (repeated until it succeeds, at most ${timeout_seconds}s: $what)"
    "$@"
    return 0
  fi
  local deadline=$((SECONDS + timeout_seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${timeout_seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 2
  done
}

down() {
  for c in "${clusters[@]}"; do
    if ((dry_run)) || cluster_exists "$c"; then
      run kind delete cluster --name "causeway-$c"
    fi
  done
  echo "kept $work (the CA and issuers); delete it when done"
}

preflight() {
  ((dry_run)) && return 0
  for tool in docker kind kubectl cargo; do
    command -v "$tool" >/dev/null || {
      echo "run.sh needs $tool on PATH" >&2
      exit 1
    }
  done
  docker info >/dev/null 2>&1 || {
    echo "run.sh needs a running Docker engine" >&2
    exit 1
  }
}

# The demo service: `causeway echo` (from the image already loaded) answering
# "hello from <cluster>" on 8080, behind Service web port 80.
demo_manifest() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
        - name: echo
          image: $image
          imagePullPolicy: Never
          args: [echo, --listen, "0.0.0.0:8080", --cluster, "$1"]
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
---
# A new federation denies what no policy allows: every cluster may reach demo.
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata:
  name: demo-from-all
spec:
  action: allow
  from: ["*"]
  to:
    namespace: demo
EOF
}

# Adds the clusterset.local stub domain to CoreDNS (once), forwarding to the
# gateway's DNS Service.
coredns_stub() {
  local context
  context="$(ctx "$1")"
  if ((dry_run)); then
    run kubectl --context "$context" -n "$namespace" get service causeway-dns -o 'jsonpath={.spec.clusterIP}'
    echo "+ (append 'clusterset.local:53 { forward . <causeway-dns-ip> }' to the Corefile of configmap kube-system/coredns)"
    run kubectl --context "$context" -n kube-system rollout restart deployment/coredns
    return 0
  fi
  local dns_ip corefile
  dns_ip="$(kubectl --context "$context" -n "$namespace" get service causeway-dns -o 'jsonpath={.spec.clusterIP}')"
  corefile="$(mktemp)"
  kubectl --context "$context" -n kube-system get configmap coredns -o 'jsonpath={.data.Corefile}' >"$corefile"
  if ! grep -q '^clusterset.local:53' "$corefile"; then
    printf '\nclusterset.local:53 {\n    errors\n    cache 5\n    forward . %s\n}\n' "$dns_ip" >>"$corefile"
    kubectl --context "$context" -n kube-system create configmap coredns --from-file=Corefile="$corefile" \
      --dry-run=client -o yaml | kubectl --context "$context" apply -f -
    kubectl --context "$context" -n kube-system rollout restart deployment/coredns
  fi
  rm -f "$corefile"
}

up() {
  preflight

  step "clusters"
  for c in "${clusters[@]}"; do
    if cluster_exists "$c"; then
      echo "causeway-$c exists"
    else
      run kind create cluster --config "$repo/kind-configs/$c.yaml" --wait 120s
    fi
  done

  step "image $image"
  run docker build -t "$image" "$repo"
  for c in "${clusters[@]}"; do
    run kind load docker-image "$image" --name "causeway-$c"
  done

  step "trust: one root, an issuer per cluster (in $work)"
  run cargo build --release --locked -p causeway-gateway --manifest-path "$repo/Cargo.toml"
  local causeway="${CARGO_TARGET_DIR:-$repo/target}/release/causeway"
  run mkdir -p "$work"
  [[ -f "$work/ca/root.pem" ]] || run "$causeway" trust init --out "$work/ca"
  for c in "${clusters[@]}"; do
    [[ -f "$work/$c/issuer.pem" ]] ||
      run "$causeway" trust issue-cluster --cluster "$c" --ca "$work/ca" --out "$work/$c"
  done

  step "install a gateway in each cluster"
  for c in "${clusters[@]}"; do
    apply_from "$(ctx "$c")" "$causeway" install \
      --cluster "$c" \
      --trust-from "$work/$c" \
      --image "$image" \
      --service-type NodePort \
      --node-port-tunnel "$tunnel_node_port" \
      --node-port-registry "$registry_node_port" \
      --advertise "$(node_ip "$c")"
  done
  for c in "${clusters[@]}"; do
    run kubectl --context "$(ctx "$c")" -n "$namespace" rollout status deployment/causeway-gateway --timeout=180s
    coredns_stub "$c"
  done

  step "link the other clusters to $seed"
  local seed_ip
  seed_ip="$(node_ip "$seed")"
  for c in "${clusters[@]}"; do
    [[ "$c" == "$seed" ]] && continue
    apply_from "$(ctx "$c")" "$causeway" link --name "$seed" \
      --registry "$seed_ip:$registry_node_port" \
      --gateway "$seed_ip:$tunnel_node_port"
  done

  step "demo/web in ${exporters[*]}, exported"
  for c in "${clusters[@]}"; do
    apply_from "$(ctx "$c")" kubectl create namespace demo --dry-run=client -o yaml
  done
  for c in "${exporters[@]}"; do
    apply_from "$(ctx "$c")" demo_manifest "$c"
    run kubectl --context "$(ctx "$c")" apply -f "$repo/examples/kubernetes/serviceexport.yaml"
  done

  step "check: north reaches web.demo.svc.clusterset.local"
  wait_for "the ServiceImport demo/web in north" \
    run kubectl --context "$(ctx north)" -n demo get serviceimport web
  wait_for "an answer from web.demo.svc.clusterset.local in north" curl_from north
  local answer
  answer="$(curl_from north)"
  if ((!dry_run)); then
    echo "north got: $answer"
    [[ "$answer" == "hello from west"* || "$answer" == "hello from east"* ]] || {
      echo "expected an answer from west or east" >&2
      exit 1
    }
  fi
  echo "ok: contexts $(for c in "${clusters[@]}"; do printf '%s ' "$(ctx "$c")"; done)"
}

# Asks for the exported service by its clusterset name from a throwaway pod.
curl_from() {
  run kubectl --context "$(ctx "$1")" -n demo run "probe-$RANDOM" --rm -i --restart=Never \
    --image "$curl_image" --command -- curl -sf --max-time 5 http://web.demo.svc.clusterset.local
}

if [[ "$mode" == down ]]; then
  down
else
  up
fi
