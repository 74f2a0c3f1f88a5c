#!/bin/busybox sh
# /init of the kernel-matrix guest (tests/kernel_matrix.rs): runs oomscope on
# the booted kernel and prints what the host checks on the serial console,
# as `@@MATRIX key value` lines and `@@MATRIX-BEGIN name` ... `@@MATRIX-END
# name` blocks, then powers off.
#
# Steps: `oomscope doctor --json`; under cgroup v2 an agent in `mode: auto`
# and a contained OOM kill, then an agent in `mode: kmsg` and a kill; then,
# where the kernel still has the v1 memory controller, the memory controller
# moved to a v1 hierarchy and a kill there with an agent in each mode.
#
# Every kill is of /alloc, which allocates only under a memory limit of at
# most 256 MiB (the guest has 1 GiB). Waits poll for a condition with a
# bound; the host bounds the whole boot and fails with this console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Kernel messages go to the log only (printed at the end): on the console
# they could cut into the lines the host parses.
dmesg -n 1
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# For doctor's lockdown check, as on a host.
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
ifconfig lo 127.0.0.1 up

fact() { echo "@@MATRIX $*"; }
block() { # name file
    echo "@@MATRIX-BEGIN $1"
    cat "$2"
    echo
    echo "@@MATRIX-END $1"
}

LIMIT=33554432 # 32 MiB

# Polls `$@` every 0.1 s, at most `tries` times.
poll() { # tries command...
    tries=$1
    shift
    while ! "$@"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

healthy() { wget -q -O /dev/null http://127.0.0.1:13133/ 2>/dev/null; }

start_agent() { # name mode [memory]
    memory_receiver=
    metrics_pipeline=
    if [ "$3" = memory ]; then
        # Every 200 ms, only the test's cgroups; no system or process
        # metrics (the console carries all of it). The oom receiver's
        # counters too, at the same pace.
        memory_receiver='    metrics_interval: 200ms
  memory:
    collection_interval: 200ms
    initial_delay: 0s
    system: { enabled: false }
    pressure: { enabled: false }
    processes: { enabled: false }
    cgroups: { include: ["/matrix-*"] }'
        metrics_pipeline="    metrics: { receivers: [oom, memory], processors: [batch], exporters: [file] }"
    fi
    cat >"/tmp/$1.yaml" <<EOF
receivers:
  oom:
    mode: $2
$OOM_EXTRA
$memory_receiver
processors:
  batch: { timeout: 100ms }
exporters:
  file: { path: "/tmp/$1.jsonl", flush_interval: 100ms }
extensions:
  health_check: { endpoint: "127.0.0.1:13133" }
service:
  extensions: [health_check]
  telemetry: { metrics: { address: "" } }
  pipelines:
    logs: { receivers: [oom], processors: [batch], exporters: [file] }
$metrics_pipeline
EOF
    oomscope --config "/tmp/$1.yaml" >"/tmp/$1.log" 2>&1 &
    agent=$!
    if poll 1200 healthy; then
        fact "agent_ready $1"
    else
        fact "agent_not_ready $1"
    fi
}

stop_agent() { # name
    kill -TERM "$agent"
    wait "$agent"
    fact "agent_exit $1 $?"
    block "records $1" "/tmp/$1.jsonl"
    block "agent_log $1" "/tmp/$1.log"
}

has_record() { # file pid
    grep -q '"linux.oom.kill"' "$1" 2>/dev/null && grep -qF "\"intValue\":\"$2\"" "$1"
}

# A contained OOM kill of /alloc in cgroup directory $2 (limit set), and a
# wait for the agent's record of it in /tmp/$1.jsonl.
kill_in() { # name cgroup_dir
    sh -c "echo \$\$ > $2/cgroup.procs && exec /alloc --matrix-kill=$1" &
    victim=$!
    wait "$victim"
    status=$?
    fact "kill $1 pid=$victim status=$status cgroup=${2#/sys/fs/cgroup}"
    if poll 1800 has_record "/tmp/$1.jsonl" "$victim"; then
        fact "record_seen $1"
    else
        fact "record_missing $1"
    fi
}

fact "kernel $(uname -r)"
fact "version $(cat /proc/version)"

# cgroup v2, the memory controller enabled for the root's children.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
fact "v2_controllers $(cat /sys/fs/cgroup/cgroup.subtree_control)"

doctor() { # name
    oomscope doctor --json >"/tmp/doctor-$1.json" 2>"/tmp/doctor-$1.err"
    fact "doctor_exit $1 $?"
    block "doctor $1" "/tmp/doctor-$1.json"
    block "doctor_stderr $1" "/tmp/doctor-$1.err"
}

doctor v2

for mode in auto kmsg; do
    name=v2-$mode
    dir=/sys/fs/cgroup/matrix-$name
    mkdir "$dir" && echo $LIMIT >"$dir/memory.max"
    echo 0 >"$dir/memory.swap.max" 2>/dev/null
    start_agent "$name" "$mode"
    kill_in "$name" "$dir"
    stop_agent "$name"
    rmdir "$dir"
done


# cgroup v2 live: the memory receiver samples a cgroup whose allocator is
# throttled above memory.high (memory pressure, `high` events, a growing
# working set) until it reaches memory.max and is killed; then a
# memory.oom.group kill of three processes. The host checks the samples
# and the group's records. (A high of half the limit throttled the
# allocator for minutes under TCG; the penalty grows with the overage.)
HIGH=29360128 # 28 MiB
name=v2-live
dir=/sys/fs/cgroup/matrix-$name
mkdir "$dir" && echo $LIMIT >"$dir/memory.max" && echo $HIGH >"$dir/memory.high"
echo 0 >"$dir/memory.swap.max" 2>/dev/null
start_agent "$name" auto memory
# Scrapes exported so far: each has one oomscope.cgroup.memory.high (only this
# cgroup has one).
scrapes() { grep -o '"oomscope.cgroup.memory.high"' "/tmp/$name.jsonl" 2>/dev/null | wc -l; }
scraped() { test "$(scrapes)" -ge "$1"; }
# Samples of the cgroup before anything runs in it.
poll 1800 scraped 2
kill_in "$name" "$dir"
group=/sys/fs/cgroup/matrix-v2-group
mkdir "$group" && echo $LIMIT >"$group/memory.max" && echo 1 >"$group/memory.oom.group"
echo 0 >"$group/memory.swap.max" 2>/dev/null
# busybox itself: its applets may run without an exec of their own.
sh -c "echo \$\$ > $group/cgroup.procs && exec /bin/busybox sleep 1000" &
member1=$!
sh -c "echo \$\$ > $group/cgroup.procs && exec /bin/busybox sleep 1000" &
member2=$!
members_in() { test "$(wc -l <"$group/cgroup.procs")" -ge 2; }
poll 1800 members_in
sh -c "echo \$\$ > $group/cgroup.procs && exec /alloc --matrix-kill=v2-group" &
victim=$!
wait "$victim"
status=$?
wait "$member1"
status1=$?
wait "$member2"
status2=$?
fact "group_kill pids=$victim,$member1,$member2 status=$status,$status1,$status2 cgroup=/matrix-v2-group"
all_recorded() {
    has_record "/tmp/$name.jsonl" "$victim" && has_record "/tmp/$name.jsonl" "$member1" &&
        has_record "/tmp/$name.jsonl" "$member2"
}
if poll 1800 all_recorded; then fact "group_records_seen"; else fact "group_records_missing"; fi
# More samples: the first began after the kills, and the last is more than
# the agent's grace for a missed kill later (report_wait 250 ms + 2 s: 15
# scrapes of 200 ms), so that a kill left unrecorded shows as missed.
after=$(($(scrapes) + 15))
poll 1800 scraped "$after"
fact "live_scrapes $(scrapes)"
stop_agent "$name"
rmdir "$group" "$dir"

# The oom_kill_process hook alone, as fentry and as kprobe: the kernel log
# is not read, so constraint, memcg, limit and trigger come from the hook.
for hook in fentry kprobe; do
    name=v2-$hook
    dir=/sys/fs/cgroup/matrix-$name
    mkdir "$dir" && echo $LIMIT >"$dir/memory.max"
    echo 0 >"$dir/memory.swap.max" 2>/dev/null
    OOM_EXTRA="    scope_hook: $hook
    kmsg_path: /nonexistent"
    start_agent "$name" ebpf
    OOM_EXTRA=
    kill_in "$name" "$dir"
    stop_agent "$name"
    rmdir "$dir"
done

# cgroup v1: the memory controller leaves the v2 hierarchy (no child uses
# it any more) for a v1 one, as on a hybrid host. A memcg that is still
# being freed keeps it busy for a moment: retried.
echo -memory >/sys/fs/cgroup/cgroup.subtree_control
umount /sys/fs/cgroup
mount -t tmpfs cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/unified /sys/fs/cgroup/memory
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
v1=no
mount_v1() { # done when mounted or failed for another reason than EBUSY
    mount -t cgroup -o memory memory /sys/fs/cgroup/memory 2>/tmp/v1.err && v1=yes && return 0
    ! grep -qi busy /tmp/v1.err
}
poll 100 mount_v1
if [ $v1 = yes ]; then
    fact "v1 mounted"
    doctor v1
    for mode in auto kmsg; do
        name=v1-$mode
        dir=/sys/fs/cgroup/memory/matrix-$name
        mkdir "$dir" && echo $LIMIT >"$dir/memory.limit_in_bytes"
        start_agent "$name" $mode
        kill_in "$name" "$dir"
        stop_agent "$name"
        rmdir "$dir"
    done
else
    fact "v1 unavailable: $(cat /tmp/v1.err)"
fi

echo "@@MATRIX-BEGIN dmesg"
dmesg
echo "@@MATRIX-END dmesg"
fact done
poweroff -f
