#!/usr/bin/env bash
# A real mailring session on the embedded store (SQLite), in a temporary directory that is removed at the
# end: create the store, apply the example topology, import 2000 users, add a server, plan the moves.
# The saved plan is kept, in a folder of its own, for a look afterwards; the script says where.
# Run it with `npm run demo` (which builds first); it needs nothing but Node.js and `npm ci`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d "${TMPDIR:-/tmp}/mailring-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
plan="$(mktemp -d "${TMPDIR:-/tmp}/mailring-demo-plan.XXXXXX")/plan.json"

# Everything of this session stays in $work: its store, and no config file of this machine applies.
export MAILRING_DB="sqlite:$work/cluster.db"
export XDG_CONFIG_HOME="$work/config"
mailring() { node "$root/bin/run.js" "$@"; }

step() { printf '\n\033[1m$ mailring %s\033[0m\n' "$*"; }
[ -t 1 ] || step() { printf '\n$ mailring %s\n' "$*"; }

step init
mailring init

step topology apply -f examples/cluster.yaml --yes
mailring topology apply -f "$root/examples/cluster.yaml" --yes >/dev/null
mailring node list

step users import examples/users.txt
mailring users import "$root/examples/users.txt"

step status
mailring status

step place alice.smith@example.com mia.mueller@example.com
mailring place alice.smith@example.com mia.mueller@example.com

step add-node mx13 --address 192.0.2.35 --zone rack-c
mailring add-node mx13 --address 192.0.2.35 --zone rack-c

step rebalance --dry-run --moves 10 --out "$plan"
mailring rebalance --dry-run --moves 10 --out "$plan"

printf '\nThe plan stays in %s: every move, the copies per server and the summary (e.g. jq .summary %s).\n' "$plan" "$plan"
printf 'The store was %s; it is removed now. Your own session: mailring init (see docs/operators-guide.md).\n' "$work/cluster.db"
