#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes the certificates vmbackup's daemons and CLI authenticate each other
# with (mutual TLS), signed by a CA of the site's own:
#
#   deploy/gen-certs.sh DIR COORDINATOR_NAME_OR_IP [HOST_NAME:HOST_UUID ...]
#
#   DIR/ca.crt, ca.key               the CA (made once; never overwritten)
#   DIR/coordinator.crt, .key        server certificate: the name or IP given,
#                                    localhost and 127.0.0.1
#   DIR/agent-HOST_NAME.crt, .key    one per pool member: its host uuid as the
#                                    URI urn:vmbackup:host:<uuid>, and its name
#   DIR/cli.crt, .key                the operators' client certificate
#                                    (URI urn:vmbackup:operator:cli)
#
# Run it again with more hosts: it adds their certificates and keeps every
# file that exists. Keys are 0600. Needs the openssl command (Debian: openssl).
# Environment: VMB_CERT_DAYS (certificates, default 825), VMB_CA_DAYS (the CA,
# default 3650).
set -euo pipefail

usage() {
  echo "usage: $0 DIR COORDINATOR_NAME_OR_IP [HOST_NAME:HOST_UUID ...]" >&2
  exit 2
}
die() {
  echo "gen-certs: $*" >&2
  exit 2
}

[ $# -ge 2 ] || usage
dir=$1
coordinator=$2
shift 2
cert_days=${VMB_CERT_DAYS:-825}
ca_days=${VMB_CA_DAYS:-3650}
[[ $cert_days =~ ^[1-9][0-9]{0,4}$ ]] || die "VMB_CERT_DAYS=$cert_days is not a number of days"
[[ $ca_days =~ ^[1-9][0-9]{0,4}$ ]] || die "VMB_CA_DAYS=$ca_days is not a number of days"
command -v openssl >/dev/null || die "the openssl command is not installed (Debian: apt-get install openssl)"

name_re='^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$'
uuid_re='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
ipv4_re='^([0-9]{1,3}\.){3}[0-9]{1,3}$'

# The coordinator's name: a DNS name, an IPv4 or an IPv6 address.
if [[ $coordinator =~ $ipv4_re || ($coordinator == *:* && $coordinator =~ ^[0-9A-Fa-f:.]+$) ]]; then
  coordinator_san="IP:$coordinator"
elif [[ $coordinator =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$ ]]; then
  coordinator_san="DNS:$coordinator"
else
  die "coordinator name '$coordinator' is neither a DNS name nor an IP address"
fi

# Every host argument is checked before anything is written.
hosts=()
uuids=()
for spec in "$@"; do
  [[ $spec == *:* ]] || die "host '$spec' is not HOST_NAME:HOST_UUID"
  host=${spec%%:*}
  uuid=${spec#*:}
  [[ $host =~ $name_re ]] || die "host name '$host' (in '$spec') may hold only letters, digits, '.', '_' and '-'"
  [[ $uuid =~ $uuid_re ]] || die "host uuid '$uuid' (in '$spec') is not a uuid"
  for i in "${!hosts[@]}"; do
    [ "${hosts[$i]}" != "$host" ] || die "host name '$host' is given twice"
    [ "${uuids[$i]}" != "${uuid,,}" ] || die "host uuid '$uuid' is given twice ('${hosts[$i]}' and '$host')"
  done
  hosts+=("$host")
  uuids+=("${uuid,,}")
done

umask 077
mkdir -p -- "$dir"
[ -d "$dir" ] && [ -w "$dir" ] || die "$dir is not a writable folder"
if [ -e "$dir/ca.crt" ] && [ ! -e "$dir/ca.key" ]; then
  die "$dir/ca.crt exists without ca.key: the CA cannot sign (restore ca.key, or use another folder)"
fi
if [ -e "$dir/ca.key" ] && [ ! -e "$dir/ca.crt" ]; then
  die "$dir/ca.key exists without ca.crt (restore ca.crt, or use another folder)"
fi

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

if [ ! -e "$dir/ca.key" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=vmbackup/CN=vmbackup CA" -days "$ca_days" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>"$work/err" ||
    die "cannot make the CA: $(cat "$work/err")"
  mv -- "$work/ca.key" "$dir/ca.key"
  mv -- "$work/ca.crt" "$dir/ca.crt"
  chmod 0644 "$dir/ca.crt"
  echo "gen-certs: made the CA: $dir/ca.crt (keep $dir/ca.key safe, off the pool if you can)"
fi

# issue NAME CN SAN EKU: DIR/NAME.crt and .key signed by the CA, unless
# NAME.crt exists (it must then name the same SAN's first entry).
issue() {
  local name=$1 cn=$2 san=$3 eku=$4
  if [ -e "$dir/$name.crt" ] || [ -e "$dir/$name.key" ]; then
    [ -e "$dir/$name.crt" ] && [ -e "$dir/$name.key" ] ||
      die "$dir/$name.crt and $name.key must both exist or neither (remove the one left to make them again)"
    local first=${san%%,*}
    # openssl prints an IP entry as "IP Address:..." (spaces dropped below).
    [[ $first != IP:* ]] || first="IPAddress:${first#IP:}"
    openssl x509 -in "$dir/$name.crt" -noout -ext subjectAltName 2>/dev/null |
      tr -d ' ' | tr ',' '\n' | grep -qxF -- "$first" ||
      die "$dir/$name.crt exists but is not for $first (remove it and its key to make it again)"
    echo "gen-certs: kept $dir/$name.crt"
    return
  fi
  cat >"$work/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=vmbackup/CN=$cn" -keyout "$work/$name.key" -out "$work/$name.csr" \
    2>"$work/err" || die "cannot make the key of $name: $(cat "$work/err")"
  openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$cert_days" \
    -extfile "$work/$name.ext" -out "$work/$name.crt" 2>"$work/err" ||
    die "cannot sign $name: $(cat "$work/err")"
  mv -- "$work/$name.key" "$dir/$name.key"
  mv -- "$work/$name.crt" "$dir/$name.crt"
  chmod 0644 "$dir/$name.crt"
  echo "gen-certs: made $dir/$name.crt ($san)"
}

coordinator_sans=$coordinator_san
for extra in DNS:localhost IP:127.0.0.1; do
  [ "$extra" = "$coordinator_san" ] || coordinator_sans="$coordinator_sans,$extra"
done
issue coordinator "$coordinator" "$coordinator_sans" serverAuth
issue cli "vmbackup operator" "URI:urn:vmbackup:operator:cli" clientAuth
for i in "${!hosts[@]}"; do
  issue "agent-${hosts[$i]}" "${hosts[$i]}" \
    "URI:urn:vmbackup:host:${uuids[$i]},DNS:${hosts[$i]}" clientAuth
done
