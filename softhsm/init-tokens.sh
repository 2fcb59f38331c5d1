#!/usr/bin/env bash
# Create the two SoftHSM tokens hsmca uses, idempotently.
#
#   softhsm/init-tokens.sh [STATE_DIR]      (default: var/softhsm)
#
# Writes STATE_DIR/softhsm2.conf, STATE_DIR/tokens/, and a random user PIN and SO PIN
# (mode 0600) in STATE_DIR/user.pin and STATE_DIR/so.pin unless they already exist.
# Tokens: "hsmca-hsm" (ProtectionLevel=HSM and every CA key) and "hsmca-software"
# (ProtectionLevel=SOFTWARE). Export SOFTHSM2_CONF=STATE_DIR/softhsm2.conf to use them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${1:-var/softhsm}
mkdir -p "$state/tokens"
state=$(cd "$state" && pwd)
umask 077
sed "s|@TOKENDIR@|$state/tokens|" "$here/softhsm2.conf.in" > "$state/softhsm2.conf"
export SOFTHSM2_CONF="$state/softhsm2.conf"
for f in user.pin so.pin; do
  if [ ! -s "$state/$f" ]; then
    # 24 hex characters from the kernel CSPRNG; never printed.
    od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$state/$f"
  fi
done
for label in hsmca-hsm hsmca-software; do
  if softhsm2-util --show-slots 2>/dev/null | grep -Eq "Label:[[:space:]]*$label[[:space:]]*\$"; then
    continue
  fi
  softhsm2-util --init-token --free --label "$label" \
    --pin "$(cat "$state/user.pin")" --so-pin "$(cat "$state/so.pin")" >/dev/null
  echo "initialised SoftHSM token $label in $state/tokens"
done
