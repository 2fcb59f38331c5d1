#!/bin/sh
# Regenerates the golden SM2 CSRs with OpenSSL 3 (an independent SM2 implementation).
#   sm2-openssl-distid.csr: SM3withSM2 with the default ID 1234567812345678 (RFC 8998 3.2.1)
#   sm2-openssl-noid.csr:   OpenSSL 3.0's default when no distid is given (an empty ID)
set -eu
cd "$(dirname "$0")"
key=$(mktemp)
trap 'rm -f "$key"' EXIT
openssl genpkey -algorithm SM2 -out "$key"
openssl req -new -key "$key" -subj /CN=sm2-distid.example.com -sm3 \
    -sigopt distid:1234567812345678 -out sm2-openssl-distid.csr
openssl req -new -key "$key" -subj /CN=sm2-noid.example.com -sm3 -out sm2-openssl-noid.csr
