#!/bin/sh
# mkcerts.sh DIR — test certificates for the executor link (certtool, Debian gnutls-bin):
#   ca.pem/ca.key        the trusted CA          ca2.pem/ca2.key  another CA (not trusted)
#   serve.*              spiffe://example.org/ah/serve (dns localhost)      — the access point
#   evil.*               spiffe://example.org/ah/agent/evil                 — an unexpected server id
#   a.*, b.*             spiffe://example.org/ah/agent/a, .../b             — executors
#   othertd.*            spiffe://other.org/ah/agent/a                      — wrong trust domain
#   expired.*            spiffe://example.org/ah/agent/old, expired in 2020
#   notyet.*             spiffe://example.org/ah/agent/new, valid from 2099
#   foreign.*            spiffe://example.org/ah/agent/f, signed by ca2
#   a2.*                 spiffe://example.org/ah/agent/a again, a new key (rotation)
set -eu
d=$1
mkdir -p "$d"
cd "$d"
key() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1.key" 2>/dev/null; }
ca() {
    key "$1"
    printf 'cn = "%s"\nca\ncert_signing_key\nexpiration_days = 30\n' "$1 test CA" >"$1.tmpl"
    certtool --generate-self-signed --load-privkey "$1.key" --template "$1.tmpl" \
        --outfile "$1.pem" 2>/dev/null
}
leaf() { # name uri signer [extra template lines]
    key "$1"
    printf 'cn = "%s"\nuri = "%s"\ndns_name = "localhost"\ntls_www_client\ntls_www_server\nsigning_key\n%s\n' \
        "$1" "$2" "${4:-expiration_days = 30}" >"$1.tmpl"
    certtool --generate-certificate --load-privkey "$1.key" --load-ca-certificate "$3.pem" \
        --load-ca-privkey "$3.key" --template "$1.tmpl" --outfile "$1.pem" 2>/dev/null
}
ca ca
ca ca2
leaf serve spiffe://example.org/ah/serve ca
leaf evil spiffe://example.org/ah/agent/evil ca
leaf a spiffe://example.org/ah/agent/a ca
leaf a2 spiffe://example.org/ah/agent/a ca
leaf b spiffe://example.org/ah/agent/b ca
leaf othertd spiffe://other.org/ah/agent/a ca
leaf expired spiffe://example.org/ah/agent/old ca \
    'activation_date = "2019-01-01 00:00:00"
expiration_date = "2020-01-01 00:00:00"'
leaf notyet spiffe://example.org/ah/agent/new ca \
    'activation_date = "2099-01-01 00:00:00"
expiration_date = "2099-06-01 00:00:00"'
leaf foreign spiffe://example.org/ah/agent/f ca2
