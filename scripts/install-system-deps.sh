#!/usr/bin/env bash
# Installs the Debian packages the lab needs (Postfix, Dovecot with sieve, NSD, OpenDKIM, nginx,
# openssl, swaks, dig) and PostgreSQL (the fleet tests start a throwaway cluster).
# Safe to run again: it installs only what is missing, and never starts the system daemons.
set -euo pipefail
pkgs=(postfix dovecot-core dovecot-imapd dovecot-lmtpd nsd openssl bind9-dnsutils iproute2
      swaks libio-socket-ssl-perl libnet-ssleay-perl ca-certificates
      dovecot-sieve opendkim opendkim-tools nginx-light postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
