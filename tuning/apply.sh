#!/usr/bin/env bash
# Installs this directory's settings on the host: the sysctls (applied at once and at every boot),
# the login-session limits and, where systemd runs, the shardmq.service drop-in. Run as root;
# --dry-run prints the commands instead. Then check with tuning/check.sh --connections N.
#
# Usage: tuning/apply.sh [--dry-run]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dry_run=false
case "${1:-}" in
    "") ;;
    --dry-run) dry_run=true ;;
    -h | --help)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "apply.sh: unknown argument: $1 (try --help)" >&2
        exit 2
        ;;
esac

run() {
    if $dry_run; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

if ! $dry_run && [ "$(id -u)" -ne 0 ]; then
    echo "apply.sh: run as root, or with --dry-run to see what it would do" >&2
    exit 1
fi

# Kernel settings: the file is read at every boot; `sysctl -p` applies it now. Lines starting
# with '-' (conntrack) are skipped where the module is not loaded.
run install -D -m 0644 "$here/sysctl.d/60-shardmq.conf" /etc/sysctl.d/60-shardmq.conf
if ! run sysctl -p /etc/sysctl.d/60-shardmq.conf; then
    echo "apply.sh: some keys were refused (above); in a container, host-wide keys belong to the host" >&2
fi

# Limits for login sessions (pam_limits): take effect at the next login.
run install -D -m 0644 "$here/limits.d/60-shardmq.conf" /etc/security/limits.d/60-shardmq.conf

# Limits for the service: systemd ignores limits.d.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    run install -D -m 0644 "$here/systemd/shardmq.service.d/60-limits.conf" \
        /etc/systemd/system/shardmq.service.d/60-limits.conf
    run systemctl daemon-reload
    echo "apply.sh: restart shardmq.service for its new limits"
else
    echo "apply.sh: systemd is not running here; skipped the shardmq.service drop-in"
fi
echo "apply.sh: log in again for limits.d, then run: $here/check.sh --connections N"
