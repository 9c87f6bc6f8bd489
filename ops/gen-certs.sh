#!/bin/sh
# gen-certs.sh DIR: development CA and certificates (EC P-256, 825 days) for the demo and the tests.
#
#   ca.crt ca.key                   the development CA
#   server.crt server.key           CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (+ $FERRY_CERT_SANS,
#                                   e.g. "DNS:broker-0,IP:10.0.0.1"); serverAuth
#   client.crt client.key           CN=ferry-client; clientAuth (mutual TLS)
#   other-ca.crt other-ca.key       an unrelated CA, and other-server.crt/key signed by it (same names,
#                                   serverAuth + clientAuth), so tests can show an untrusted peer is refused
#
# Idempotent: does nothing if DIR/ca.crt exists (it is written last). Keys are mode 0600.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
if [ -f "$dir/ca.crt" ]; then
    exit 0
fi
command -v openssl >/dev/null 2>&1 || { echo "gen-certs.sh: openssl not found" >&2; exit 1; }

mkdir -p "$dir"
work=$(mktemp -d "$dir/.gen-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
umask 077

days=825
sans="DNS:localhost,IP:127.0.0.1"
if [ -n "${FERRY_CERT_SANS:-}" ]; then
    sans="$sans,$FERRY_CERT_SANS"
fi

key() { # key FILE: a new P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

ca() { # ca NAME CN: a self-signed CA
    key "$work/$1.key"
    openssl req -x509 -new -key "$work/$1.key" -out "$work/$1.crt" -days "$days" -sha256 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
}

leaf() { # leaf NAME CA CN EXTENSIONS: a certificate signed by CA
    key "$work/$1.key"
    openssl req -new -key "$work/$1.key" -out "$work/$1.csr" -subj "/CN=$3"
    printf '%s\n' "$4" >"$work/$1.ext"
    serial="0x$(openssl rand -hex 16)"
    openssl x509 -req -in "$work/$1.csr" -CA "$work/$2.crt" -CAkey "$work/$2.key" -set_serial "$serial" \
        -days "$days" -sha256 -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
}

server_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans"
client_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
other_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans"

ca ca "Ferry Development CA"
leaf server ca localhost "$server_ext"
leaf client ca ferry-client "$client_ext"
ca other-ca "Ferry Other CA"
leaf other-server other-ca localhost "$other_ext"

for f in ca.key server.key client.key other-ca.key other-server.key; do
    chmod 600 "$work/$f"
    mv "$work/$f" "$dir/$f"
done
for f in server.crt client.crt other-ca.crt other-server.crt ca.crt; do # ca.crt last: marks completion
    chmod 644 "$work/$f"
    mv "$work/$f" "$dir/$f"
done
echo "gen-certs.sh: development certificates in $dir"
