#!/usr/bin/env bash
# DEV ONLY: writes a throwaway CA, the coordinator's server certificate (SANs
# for the in-cluster Service names of namespace "stemforge"), a worker client
# certificate and two tokens into ./secrets for this overlay's secretGenerator.
# Usage: make-dev-secrets.sh [-f] [OUTDIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
force=()
if [ "${1:-}" = "-f" ]; then force=(-f); shift; fi
out="${1:-$here/secrets}"
ns="${STEMFORGE_NAMESPACE:-stemforge}"
exec "$here/../../../compose/make-dev-secrets.sh" "${force[@]}" -o "$out" -m 0600 \
  stemforge-coordinator \
  "stemforge-coordinator.$ns.svc" \
  "stemforge-coordinator.$ns.svc.cluster.local" \
  localhost 127.0.0.1
