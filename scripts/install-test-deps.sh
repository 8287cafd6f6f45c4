#!/usr/bin/env bash
# Installs what the test suite runs for real: Dovecot, MariaDB and OpenSSH from Debian's packages, and
# the Debian 13 root in which the tests run Dovecot 2.4 (scripts/build-dovecot24-root.sh, cached in
# /var/cache/mailring-testbed: built once per machine, a few minutes the first time).
# The packages' own services are not used; tests start their own instances on loopback.
set -euo pipefail

packages=(dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-mysql dovecot-sqlite
  mariadb-server mariadb-client openssh-server openssh-client debootstrap)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Dovecot test instances deliver mail as this user; sshd needs its privilege-separation directory.
id vmail >/dev/null 2>&1 || as_root useradd -r -U -M -d /nonexistent -s /usr/sbin/nologin vmail
as_root mkdir -p /run/sshd
# Dovecot 2.4 (Debian 13's) beside the host's 2.3: the tests start it chrooted in this root.
as_root "$(dirname "$0")/build-dovecot24-root.sh"
echo "Test dependencies are installed."
