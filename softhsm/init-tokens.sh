#!/usr/bin/env bash
# Create the two SoftHSM tokens hsmca uses, idempotently.
#
#   softhsm/init-tokens.sh [STATE_DIR]      (default: var/softhsm)
#
# Writes STATE_DIR/softhsm2.conf, STATE_DIR/tokens/, and a random user PIN and SO PIN
# (mode 0600) in STATE_DIR/user.pin and STATE_DIR/so.pin unless they already exist.
# No PIN ever appears in a process's argv. Needs softhsm2-util and script (util-linux).
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
  # No PIN on any command line, where ps and /proc/*/cmdline show it to every user:
  # softhsm2-util asks for the PINs it is not given on the terminal, so it runs under
  # script(1)'s pseudo-terminal and the PINs are typed into it by printf, a shell builtin.
  # Its output (the terminal echoes what is typed before it turns echo off) is discarded.
  user_pin=$(<"$state/user.pin")
  so_pin=$(<"$state/so.pin")
  printf '%s\n%s\n%s\n%s\n' "$so_pin" "$so_pin" "$user_pin" "$user_pin" |
    script -qec "softhsm2-util --init-token --free --label $label" /dev/null >/dev/null
  if ! softhsm2-util --show-slots 2>/dev/null | grep -Eq "Label:[[:space:]]*$label[[:space:]]*\$"; then
    echo "init-tokens.sh: initialising SoftHSM token $label failed" >&2
    exit 1
  fi
  echo "initialised SoftHSM token $label in $state/tokens"
done
