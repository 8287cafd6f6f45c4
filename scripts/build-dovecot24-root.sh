#!/usr/bin/env bash
# Builds (once per machine) the Debian 13 "trixie" root in which the tests run Dovecot 2.4 beside the
# Debian 12 Dovecot 2.3 of the host. Only Dovecot runs inside it; MariaDB, sshd and the store stay outside.
#
#   scripts/build-dovecot24-root.sh [DIR]     (default $MAILRING_DOVECOT24_ROOT or /var/cache/mailring-testbed/trixie)
#
# Idempotent: a root that is complete (its stamp matches this script's package list and vmail account)
# is left alone. Atomic: debootstrap writes into DIR.tmp-PID, which is renamed to DIR only when complete,
# so an interrupted build never leaves a half root where the tests look (the next build removes what it
# left, seen: a build killed mid-way, then run again). Needs root and debootstrap.
set -euo pipefail

root="${1:-${MAILRING_DOVECOT24_ROOT:-/var/cache/mailring-testbed/trixie}}"
suite=trixie
packages=dovecot-core,dovecot-imapd,dovecot-lmtpd,dovecot-mysql,dovecot-sqlite
mirror="${MAILRING_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "$(id -u)" -ne 0 ]; then
  echo "build-dovecot24-root.sh must run as root (debootstrap, chroot)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# The root's vmail account must have the host's uid and gid: mail folders are shared between the two.
vmail_uid="$(id -u vmail)"
vmail_gid="$(id -g vmail)"
stamp="suite=$suite packages=$packages vmail=$vmail_uid:$vmail_gid"

mkdir -p "$(dirname "$root")"
# One build at a time on a machine (two test runs, or CI and a developer).
exec 9>"$root.lock"
flock 9

# Small fix-ups, cheap and idempotent, applied to a root of any age: doveconf reads /etc/mtab.
fixups() {
  ln -sfn ../proc/self/mounts "$1/etc/mtab"
}

if [ -f "$root/.mailring-stamp" ] && [ "$(cat "$root/.mailring-stamp")" = "$stamp" ] &&
  chroot "$root" dovecot --version >/dev/null 2>&1; then
  fixups "$root"
  echo "Dovecot 2.4 root is ready: $root ($(chroot "$root" dovecot --version))"
  exit 0
fi

tmp="$root.tmp-$$"
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT
rm -rf --one-file-system "$root".tmp-*
echo "Building the Dovecot 2.4 root in $root (debootstrap $suite, a few minutes, about 300 MB)"
debootstrap --variant=minbase --include="$packages" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
  tail -30 "$tmp.log" >&2
  exit 1
}
rm -f "$tmp.log"

# The packages' own services never run here; the tests start their own instances with their own configs.
chroot "$tmp" groupadd -r -g "$vmail_gid" vmail 2>/dev/null || true
chroot "$tmp" useradd -r -u "$vmail_uid" -g "$vmail_gid" -M -d /nonexistent -s /usr/sbin/nologin vmail
fixups "$tmp"
version="$(chroot "$tmp" dovecot --version)"
case "$version" in
  2.4*) ;;
  *)
    echo "the $suite root's dovecot --version is '$version', not 2.4" >&2
    exit 1
    ;;
esac
echo "$stamp" >"$tmp/.mailring-stamp"

# Replace an old root (stale stamp) only now that the new one is complete.
if [ -e "$root" ]; then
  mv "$root" "$root.old-$$"
  mv "$tmp" "$root"
  rm -rf --one-file-system "$root.old-$$"
else
  mv "$tmp" "$root"
fi
trap - EXIT
echo "Dovecot 2.4 root is ready: $root ($version)"
