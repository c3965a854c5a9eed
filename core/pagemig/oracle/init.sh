#!/bin/sh
# pagemig oracle: PID 1 of a User-Mode Linux guest whose root is the host's / (hostfs).
#
# The host side (pagemig.oracle.uml) puts this script, run.env, workload.sh and any
# binaries in a run directory and boots linux.uml with PAGEMIG_RUN=<that directory> on
# the kernel command line; the kernel hands unknown NAME=VALUE parameters to init as
# environment variables.  Results go back through the same directory:
#   status            "ok", or "fail: why" (the host reads nothing else as success)
#   times             "name seconds.nanoseconds" lines (guest clock = host clock)
#   release           uname -r of the guest kernel
#   before/, after/   /proc files read before and after compact_memory
# Every step that can hang is bounded here too, and the host wraps the whole boot in a
# timeout: a guest that never powers off is killed.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
R="$PAGEMIG_RUN"
fail() {
    echo "fail: $*" > "$R/status"
    sync
    poweroff -f
}
[ -n "$R" ] && [ -d "$R" ] || { echo "pagemig init: PAGEMIG_RUN not set" >&2; poweroff -f; }
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys 2>/dev/null
. "$R/run.env"
now() { date +%s.%N; }
stamp() { echo "$1 $(now)" >> "$R/times"; }

# Copy the /proc files a snapshot needs.  buddyinfo first and vmstat last: kpageflags
# takes longest to read, and buddyinfo is what the free blocks are checked against.
capture() {
    d="$R/$1"
    mkdir -p "$d" || fail "mkdir $d"
    for f in buddyinfo pagetypeinfo zoneinfo version meminfo; do
        cat "/proc/$f" > "$d/$f" || fail "read /proc/$f"
    done
    cat /proc/kpageflags > "$d/kpageflags" || fail "read /proc/kpageflags"
    cat /proc/kpagecount > "$d/kpagecount" || fail "read /proc/kpagecount"
    cat /proc/vmstat > "$d/vmstat" || fail "read /proc/vmstat"
}

uname -r > "$R/release"
stamp boot
. "$R/workload.sh" || fail "workload $WORKLOAD did not start"
i=0
while [ ! -e "$R/ready" ]; do
    sleep 0.2
    i=$((i + 1))
    [ "$i" -lt $((READY_TIMEOUT * 5)) ] || fail "workload $WORKLOAD not ready after ${READY_TIMEOUT}s"
done
stamp ready
capture before
stamp compact_start
echo 1 > /proc/sys/vm/compact_memory || fail "write /proc/sys/vm/compact_memory"
stamp compact_end
capture after
echo ok > "$R/status"
sync
poweroff -f
