#!/usr/bin/env bash
# Reports whether this host can hold N concurrent MQTT connections: for each setting the current
# value, the recommended one and a status. FAIL means N connections cannot be held (descriptors,
# locked memory for io_uring, conntrack, memory, and for a load generator its ephemeral ports);
# WARN costs performance under load, not capacity. Exits 1 when any line FAILs.
#
# Usage: tuning/check.sh [--role broker|loadgen] [--connections N]
#   --role broker   (default) a host that runs the broker: it accepts connections on its
#                   listening ports and needs no ephemeral ports
#   --role loadgen  a host that runs shardmq-loadtest, with the broker beside it as the tests do:
#                   also checks the ephemeral port range its outgoing connections draw from
#   --connections N (default 100000)
# Fix with tuning/apply.sh; each setting is explained in tuning/TUNING.md.
set -euo pipefail

connections=100000
role=broker
while [ $# -gt 0 ]; do
    case "$1" in
        --role)
            role="${2:-}"
            shift 2 || shift
            ;;
        --role=*)
            role="${1#*=}"
            shift
            ;;
        --connections)
            connections="${2:-}"
            shift 2 || shift
            ;;
        --connections=*)
            connections="${1#*=}"
            shift
            ;;
        -h | --help)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "check.sh: unknown argument: $1 (try --help)" >&2
            exit 2
            ;;
    esac
done
if ! [[ "$connections" =~ ^[0-9]+$ ]] || [ "$connections" -eq 0 ]; then
    echo "check.sh: --connections needs a positive number" >&2
    exit 2
fi
case "$role" in
    broker | loadgen) ;;
    *)
        echo "check.sh: --role needs broker or loadgen, not '$role'" >&2
        exit 2
        ;;
esac

# Descriptors a broker process needs beyond its connections (listeners, rings, logs, files).
readonly broker_reserve=1024
# Widest ephemeral port range (1024-65535) and thus the most connections per source address.
readonly max_ports=64512
# Estimated memory per connection: a kernel socket (~3.5 KiB idle) and the broker's session
# (<= 1 KiB); with the load generator on the same host, a second socket and its client (~1 KiB).
if [ "$role" = loadgen ]; then
    readonly kib_per_connection=10 memory_note="with broker and load generator on this host"
else
    readonly kib_per_connection=5 memory_note="for the broker"
fi

fails=0
warns=0

# row NAME CURRENT RECOMMENDED STATUS [NOTE]
row() {
    printf '%-32s %-24s %-24s %s\n' "$1" "$2" "$3" "$4"
    if [ -n "${5:-}" ]; then
        printf '    %s\n' "$5"
    fi
    case "$4" in
        FAIL) fails=$((fails + 1)) ;;
        WARN) warns=$((warns + 1)) ;;
    esac
}

# sysctl_value NAME: the value of a sysctl (whitespace squeezed), or "absent".
sysctl_value() {
    local path="/proc/sys/${1//.//}"
    if [ -r "$path" ]; then
        tr -s '\t ' '  ' <"$path"
    else
        echo absent
    fi
}

# field N TEXT: the Nth whitespace-separated field of TEXT.
field() {
    local -a parts
    read -r -a parts <<<"$2"
    echo "${parts[$(($1 - 1))]:-}"
}

# at_least CURRENT WANTED: true if CURRENT (a number or "unlimited") >= WANTED.
at_least() {
    [ "$1" = unlimited ] || [ "$1" = infinity ] || { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }
}

need_fds=$((connections + broker_reserve))
printf 'Can this host hold %d MQTT connections (role: %s)?\n\n' "$connections" "$role"
printf '%-32s %-24s %-24s %s\n' setting current recommended status

# --- descriptors ---------------------------------------------------------------------------------
value=$(sysctl_value fs.file-max)
if at_least "$value" $((need_fds + 65536)); then status=ok; else status=FAIL; fi
row fs.file-max "$value" ">= $((need_fds + 65536))" $status \
    "$([ $status = FAIL ] && echo 'system-wide open files: every connection is one (sysctl.d)')"

value=$(sysctl_value fs.nr_open)
if at_least "$value" "$need_fds"; then status=ok; else status=FAIL; fi
row fs.nr_open "$value" ">= $need_fds" $status \
    "$([ $status = FAIL ] && echo 'caps any RLIMIT_NOFILE: the broker is one process (sysctl.d)')"

hard=$(ulimit -Hn)
soft=$(ulimit -Sn)
if at_least "$hard" "$need_fds"; then status=ok; else status=FAIL; fi
note=""
if [ $status = FAIL ]; then
    note="a broker started from this shell can hold $((hard > broker_reserve ? hard - broker_reserve : 0)) connections; raise with limits.d or the systemd drop-in (some CI hosts cap it at 20000 for good)"
fi
row "RLIMIT_NOFILE hard (this shell)" "$hard" ">= $need_fds" $status "$note"
if at_least "$soft" "$need_fds"; then status=ok; else status=WARN; fi
row "RLIMIT_NOFILE soft (this shell)" "$soft" ">= $need_fds" $status \
    "$([ $status = WARN ] && echo 'programs must raise their soft limit to the hard one (shardmq-loadtest does)')"

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] &&
    [ "$(systemctl show -p LoadState --value shardmq.service 2>/dev/null)" = loaded ]; then
    value=$(systemctl show -p LimitNOFILE --value shardmq.service)
    if at_least "$value" "$need_fds"; then status=ok; else status=FAIL; fi
    row "shardmq.service LimitNOFILE" "$value" ">= $need_fds" $status \
        "$([ $status = FAIL ] && echo 'install tuning/systemd/shardmq.service.d/60-limits.conf')"
fi

# --- io_uring and locked memory ------------------------------------------------------------------
kernel=$(uname -r)
kernel_major=${kernel%%.*}
kernel_minor=${kernel#*.}
kernel_minor=${kernel_minor%%[!0-9]*}
kernel_code=$((kernel_major * 1000 + kernel_minor))
if [ $kernel_code -ge 5008 ]; then status=ok; else status=FAIL; fi
row "kernel (io_uring)" "$kernel" ">= 5.8" $status \
    "$([ $status = FAIL ] && echo 'glommio needs io_uring as in Linux 5.8 or later')"

value=$(sysctl_value kernel.io_uring_disabled)
if [ "$value" != absent ]; then
    case "$value" in
        0) status=ok note="" ;;
        1) status=WARN note="io_uring only for members of kernel.io_uring_group (and root)" ;;
        *) status=FAIL note="io_uring is disabled for everyone" ;;
    esac
    row kernel.io_uring_disabled "$value" 0 $status "$note"
fi

# glommio checks the soft limit and refuses to start below 512 KiB, even as root. Then its rings
# (charged to RLIMIT_MEMLOCK before Linux 5.12) and registered I/O buffers (charged on every kernel
# without CAP_IPC_LOCK; glommio skips registering them when refused) need more.
memlock=$(ulimit -Sl)
memlock_text="$memlock"
[ "$memlock" = unlimited ] || memlock_text="${memlock} KiB"
if ! at_least "$memlock" 512; then
    status=FAIL
    note="glommio refuses to start with less than 512 KiB of locked memory"
elif at_least "$memlock" 65536; then
    status=ok
    note=""
elif [ "$(id -u)" -eq 0 ]; then
    status=ok
    note="root has CAP_IPC_LOCK: io_uring memory is not charged to the limit"
elif [ $kernel_code -lt 5012 ]; then
    status=FAIL
    note="before Linux 5.12 every shard's io_uring rings are locked memory: shards fail to start"
else
    status=WARN
    note="glommio's registered I/O buffers do not fit: it falls back to unregistered (slower) I/O"
fi
row "RLIMIT_MEMLOCK soft (this shell)" "$memlock_text" ">= 65536 KiB (unlimited)" $status "$note"

# --- ports for a load generator on this host ---------------------------------------------------
# Only outgoing connections take an ephemeral port; a broker's side of each connection uses its
# listening port, so a broker-only host is not judged on this range.
if [ "$role" = loadgen ]; then
    range=$(sysctl_value net.ipv4.ip_local_port_range)
    low=$(field 1 "$range")
    high=$(field 2 "$range")
    ports=$((high - low + 1))
    wanted_ports=$((connections < max_ports ? connections : max_ports))
    if [ $ports -ge $wanted_ports ]; then status=ok; else status=FAIL; fi
    note=""
    if [ $status = FAIL ]; then
        note="a load generator here has $ports ports per source address; widen to 1024 65535 (sysctl.d)"
    fi
    if [ "$connections" -gt "$ports" ]; then
        ips=$(((connections + ports - 1) / ports))
        note="${note:+$note; }a load generator here needs $ips source addresses: shardmq-loadtest --src-ips $ips"
    fi
    row net.ipv4.ip_local_port_range "$range ($ports)" "1024 65535 ($max_ports)" $status "$note"
fi

# --- connection tracking ---------------------------------------------------------------------------
value=$(sysctl_value net.netfilter.nf_conntrack_max)
if [ "$value" != absent ]; then
    if at_least "$value" "$need_fds"; then status=ok; else status=FAIL; fi
    row net.netfilter.nf_conntrack_max "$value" ">= $need_fds" $status \
        "$([ $status = FAIL ] && echo 'conntrack is loaded: new connections are dropped when its table is full')"
fi

# --- memory ----------------------------------------------------------------------------------------
available_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
needed_kib=$((connections * kib_per_connection))
if [ "$available_kib" -ge "$needed_kib" ]; then status=ok; else status=FAIL; fi
row "MemAvailable" "$((available_kib / 1024)) MiB" ">= $((needed_kib / 1024)) MiB" $status \
    "$([ $status = FAIL ] && echo "estimate: ${kib_per_connection} KiB per connection ${memory_note}")"

tcp_mem=$(sysctl_value net.ipv4.tcp_mem)
tcp_mem_max=$(field 3 "$tcp_mem")
if [ "$tcp_mem_max" -ge "$connections" ]; then status=ok; else status=WARN; fi
row net.ipv4.tcp_mem "$tcp_mem" "max >= $connections pages" $status \
    "$([ $status = WARN ] && echo 'a fan-out queues ~4 KiB per connection; above the max TCP drops data')"

# --- storms and performance -----------------------------------------------------------------------
# check_min NAME WANTED WHY: WARN when the sysctl is below WANTED.
check_min() {
    local value status
    value=$(field 1 "$(sysctl_value "$1")")
    if at_least "$value" "$2"; then status=ok; else status=WARN; fi
    row "$1" "$value" ">= $2" $status "$([ $status = WARN ] && echo "$3")"
}
storm=$((connections < 65535 ? connections : 65535))
check_min net.core.somaxconn "$storm" "accept queue overflows in a reconnect storm: clients retry after 1-7 s"
check_min net.ipv4.tcp_max_syn_backlog "$storm" "SYN backlog overflows in a reconnect storm"
check_min net.core.netdev_max_backlog "$((connections < 10000 ? 1000 : 65536))" "bursts of small packets from many clients are dropped"
check_min net.ipv4.tcp_max_orphans "$((connections < 262144 ? connections : 262144))" "a mass disconnect resets connections"
check_min net.ipv4.tcp_max_tw_buckets "$((connections < 2000000 ? connections : 2000000))" "a mass disconnect overflows TIME_WAIT"

rmem_default=$(field 2 "$(sysctl_value net.ipv4.tcp_rmem)")
if [ "$connections" -lt 100000 ] || [ "$rmem_default" -le 16384 ]; then status=ok; else status=WARN; fi
row "net.ipv4.tcp_rmem (default)" "$rmem_default" "<= 16384" $status \
    "$([ $status = WARN ] && echo 'a large default receive buffer times many sockets pressures tcp_mem')"

printf '\n'
if [ $fails -gt 0 ]; then
    printf 'This host cannot hold %d connections: %d FAIL, %d WARN. Fix with tuning/apply.sh (see TUNING.md).\n' \
        "$connections" "$fails" "$warns"
    exit 1
fi
printf 'This host can hold %d connections (%d WARN).\n' "$connections" "$warns"
