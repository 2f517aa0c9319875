#!/usr/bin/env bash
# Generates DEVELOPMENT TLS material and tokens for stemforge:
#   ca.crt ca.key                 a throwaway certificate authority
#   coordinator.crt .key          server certificate (SANs from the arguments)
#   worker.crt worker.key         client certificate for workers (mutual TLS)
#   client.token worker.token     two random bearer tokens (no trailing newline)
#
# Usage: make-dev-secrets.sh [-o OUTDIR] [-m MODE] [-f] [SAN...]
#   OUTDIR  default: the secrets/ folder next to this script (compose)
#   MODE    file mode of the output, default 0644 so the container user
#           (uid 10001) can read compose's bind-mounted secret files
#   -f      overwrite existing files
#   SAN     DNS names or IP addresses for the coordinator certificate,
#           default: coordinator localhost 127.0.0.1
#
# Not for production: the CA key sits next to the certificates and the files
# are world-readable by default. Use your PKI (or cert-manager) and a secret
# store for real deployments.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/secrets"
mode=0644
force=0
while getopts "o:m:fh" opt; do
  case "$opt" in
    o) out="$OPTARG" ;;
    m) mode="$OPTARG" ;;
    f) force=1 ;;
    h) sed -n '2,20p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ "$#" -eq 0 ]; then
  set -- coordinator localhost 127.0.0.1
fi

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
mkdir -p "$out"
if [ "$force" -eq 0 ] && [ -e "$out/ca.crt" ]; then
  echo "$out/ca.crt exists; pass -f to regenerate everything" >&2
  exit 1
fi

sans=""
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
    sans="${sans:+$sans,}IP:$name"
  else
    sans="${sans:+$sans,}DNS:$name"
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077

days=825
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Certificate authority.
key "$out/ca.key"
cat >"$work/ca.ext" <<EXT
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
# Self-signed with explicit extensions (portable across OpenSSL 1.1 and 3).
openssl req -new -key "$out/ca.key" -subj "/O=stemforge dev/CN=stemforge dev CA" -out "$work/ca.csr"
openssl x509 -req -in "$work/ca.csr" -signkey "$out/ca.key" -sha256 -days "$days" \
  -extfile "$work/ca.ext" -out "$out/ca.crt" 2>/dev/null

issue() { # name cn eku extra-ext
  local name="$1" cn="$2" eku="$3" extra="${4:-}"
  key "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "/O=stemforge dev/CN=$cn" -out "$work/$name.csr"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [ -n "$extra" ] && echo "$extra"
  } >"$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
    -extfile "$work/$name.ext" -out "$out/$name.crt" 2>/dev/null
  openssl verify -CAfile "$out/ca.crt" -purpose "$( [ "$eku" = serverAuth ] && echo sslserver || echo sslclient )" \
    "$out/$name.crt" >/dev/null
}
issue coordinator "$1" serverAuth "subjectAltName = $sans"
issue worker stemforge-worker clientAuth

# Two tokens: one for clients (submit/status/watch...), one for workers.
printf '%s' "$(openssl rand -hex 32)" >"$out/client.token"
printf '%s' "$(openssl rand -hex 32)" >"$out/worker.token"

chmod "$mode" "$out"/ca.crt "$out"/coordinator.* "$out"/worker.* "$out"/*.token
chmod 0600 "$out/ca.key"
echo "wrote dev CA, coordinator certificate ($sans), worker client certificate and two tokens to $out"
