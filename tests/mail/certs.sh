#!/usr/bin/env bash
# certs.sh DIR: a test city CA (DIR/ca.crt) and a certificate it signed, for localhost and
# 127.0.0.1 (DIR/tls.crt, DIR/tls.key; the mail server's, or the one that signs profiles);
# P-256, valid two days. A CA and a leaf, not one self-signed certificate: rustls takes no
# server certificate as its own root, and a city's mail server has none either.
set -euo pipefail
cd "$1"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=Test City CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -new "${ec[@]}" -subj /CN=localhost -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext.cnf -out tls.crt 2>/dev/null
