#!/usr/bin/env bash
# Start a local single-node SLURM cluster (Debian 12 slurm-wlm 22.05) for the workflow tests
# and for trying `snakemake --profile profiles/slurm` on one machine.
#
# Usage (as root):  tools/slurm/start-slurm.sh [RUN_DIR]      stop: tools/slurm/stop-slurm.sh
#   RUN_DIR  PID files, daemon output, generated configs ($SLURM_RUN_DIR, else /tmp/hessketch-slurm);
#            recorded in /run/slurm/start-slurm.rundir while the cluster is up
# Environment (all optional):
#   SLURM_ACCOUNTING=none|slurmdbd  none (default): no accounting database, so `sacct` fails;
#                   run Snakemake with `--slurm-status-command squeue`. slurmdbd: MariaDB +
#                   slurmdbd, account `ci` for root (and SLURM_EXTRA_USERS); `sacct` works.
#   SLURM_CPUS, SLURM_MEM_MB  what the node advertises (default: nproc, 85 % of MemTotal)
#   SLURM_GPUS      fake GPUs as GRES gpu (default 2; device nodes aliasing /dev/null)
#   SLURM_GPU_TYPE  GPU type (e.g. a100), needed for the `gpu_model` resource
#   SLURM_START_TIMEOUT  seconds to wait for the node to become idle (default 60)
#
# The cluster: partitions `cpu` (default) and `gpu` on one node named `hostname -s`,
# addressed as 127.0.0.1; daemons run as root (munged as munge), no systemd, no cgroups.
# Idempotent: installs missing packages, rewrites /etc/slurm/{slurm,gres}.conf, starts only
# what is not running (restarting its own slurm daemons if the config changed) and records each
# PID in RUN_DIR/pids, so stop-slurm.sh stops exactly what this script started.
# The config must live in /etc/slurm: Snakemake's jobstep plugin drops SLURM_CONF (and every
# other SLURM_* variable) before the `srun` inside a job.
set -euo pipefail

RUN_DIR=${1:-${SLURM_RUN_DIR:-/tmp/hessketch-slurm}}
ACCOUNTING=${SLURM_ACCOUNTING:-none}
CPUS=${SLURM_CPUS:-$(nproc)}
MEM_MB=${SLURM_MEM_MB:-$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)}
GPUS=${SLURM_GPUS:-2}
GPU_TYPE=${SLURM_GPU_TYPE:-}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
NODE=$(hostname -s)
CONF=/etc/slurm
STATE=/var/lib/slurm
PIDS=$RUN_DIR/pids
LOGS=$RUN_DIR/logs

log() { echo "[start-slurm] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
case $ACCOUNTING in none | slurmdbd) ;; *) die "SLURM_ACCOUNTING must be none or slurmdbd" ;; esac
mkdir -p "$PIDS" "$LOGS"

# --- packages (only the missing ones; apt-get update only if the first try fails)
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ "$ACCOUNTING" = slurmdbd ]; then
    command -v slurmdbd >/dev/null || need+=(slurmdbd)
    command -v mariadbd >/dev/null || need+=(mariadb-server)
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    install_pkgs() { apt-get install -y --no-install-recommends "${need[@]}" >>"$LOGS/apt.log" 2>&1; }
    install_pkgs || { apt-get update >>"$LOGS/apt.log" 2>&1 && install_pkgs; } ||
        die "apt-get install failed, see $LOGS/apt.log"
fi

# --- helpers
alive() {  # alive NAME COMM: the PID recorded for NAME is a live process called COMM
    local f=$PIDS/$1.pid
    [ -s "$f" ] && [ "$(cat "/proc/$(cat "$f")/comm" 2>/dev/null)" = "$2" ]
}
wait_for() {  # wait_for SECONDS CMD...: poll CMD every 0.2 s
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
launch() {  # launch NAME CMD...: run a foreground daemon detached; setsid execs, so $! is its PID
    local name=$1; shift
    setsid "$@" >"$LOGS/$name.out" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
}
stop_ours() {  # stop_ours NAME COMM: SIGTERM our daemon, SIGKILL after 15 s
    alive "$1" "$2" || return 0
    local p; p=$(cat "$PIDS/$1.pid")
    kill -TERM "$p"
    for _ in $(seq 75); do [ -d "/proc/$p" ] || break; sleep 0.2; done
    [ ! -d "/proc/$p" ] || kill -KILL "$p"
    rm -f "$PIDS/$1.pid"
}

# --- refuse to touch a cluster that this RUN_DIR did not start
if ! alive slurmctld slurmctld && [ -f $CONF/slurm.conf ] && scontrol ping >/dev/null 2>&1; then
    other=$(cat /run/slurm/start-slurm.rundir 2>/dev/null || true)
    die "a slurmctld runs that was not started with RUN_DIR $RUN_DIR${other:+ (but with $other: stop-slurm.sh $other stops it)}"
fi

# --- directories, munge key, fake GPUs
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -m 0755 /run/slurm "$CONF"
install -d -o slurm -g slurm -m 0755 "$STATE" "$STATE/slurmctld" "$STATE/slurmd" /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
# gres/gpu drops GPUs without File= and File= must be a device: char devices 1,3 (/dev/null).
install -d -m 0755 "$STATE/fakegpu"
for ((i = 0; i < GPUS; i++)); do
    [ -c "$STATE/fakegpu/nvidia$i" ] || mknod -m 0666 "$STATE/fakegpu/nvidia$i" c 1 3
done

# --- configs
if [ "$ACCOUNTING" = slurmdbd ]; then
    acct="JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu"
else
    acct="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"
fi
gres_types="" gres_node="" gres_conf=""
if [ "$GPUS" -gt 0 ]; then
    gres_types="GresTypes=gpu" gres_node=" Gres=gpu:${GPU_TYPE:+$GPU_TYPE:}$GPUS"
    gres_conf="NodeName=$NODE Name=gpu${GPU_TYPE:+ Type=$GPU_TYPE} File=$STATE/fakegpu/nvidia[0-$((GPUS - 1))]"
fi
# MinJobAge=300: finished jobs stay visible to squeue for 5 min; the plugin's squeue status
# check needs MinJobAge >= 3 x --slurm-init-seconds-before-status-checks (else it uses sacct).
cat >"$RUN_DIR/slurm.conf" <<CONF_EOF
# Generated by tools/slurm/start-slurm.sh: single-node test cluster.
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
DefMemPerCPU=500
JobCompType=jobcomp/none
MailProg=/bin/true
$acct
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB$gres_node State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
CONF_EOF
echo "$gres_conf" >"$RUN_DIR/gres.conf"
files="slurm.conf gres.conf"
if [ "$ACCOUNTING" = slurmdbd ]; then
    (umask 077 && cat >"$RUN_DIR/slurmdbd.conf" <<CONF_EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
CONF_EOF
    )
    files+=" slurmdbd.conf"
fi
changed=0
for f in $files; do
    mode=0644; [ "$f" = slurmdbd.conf ] && mode=0600
    cmp -s "$RUN_DIR/$f" "$CONF/$f" || { install -m $mode "$RUN_DIR/$f" "$CONF/$f"; changed=1; }
done
if [ $changed = 1 ] && { alive slurmctld slurmctld || alive slurmd slurmd; }; then
    # `scontrol reconfigure` does not apply GRES changes (steps fail); restart instead.
    log "config changed: restarting our slurm daemons"
    stop_ours slurmd slurmd; stop_ours slurmctld slurmctld; stop_ours slurmdbd slurmdbd
fi

# --- daemons, in start order: munged, (mariadbd, slurmdbd,) slurmctld, slurmd
if alive munged munged; then
    :
elif munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "using a munged this script did not start (stop-slurm.sh leaves it alone)"
else
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid  # forks, then returns
    wait_for 10 test -s /run/munge/munged.pid || die "munged did not start"
    cp /run/munge/munged.pid "$PIDS/munged.pid"
fi
wait_for 10 sh -c 'munge -n | unmunge' || die "munge does not work"

if [ "$ACCOUNTING" = none ]; then  # left over from an earlier start in mode slurmdbd
    stop_ours slurmdbd slurmdbd; stop_ours mariadb mariadbd
else
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    if ! alive mariadb mariadbd; then
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$LOGS/mariadb-install.log" 2>&1
        launch mariadb /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
            --socket=/run/mysqld/mysqld.sock
        wait_for 30 mariadb -e 'select 1' || die "mariadbd did not start, see $LOGS/mariadb.out"
    fi
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    if ! alive slurmdbd slurmdbd; then
        launch slurmdbd /usr/sbin/slurmdbd -D
        wait_for 30 sacctmgr -n list cluster || die "slurmdbd did not start, see /var/log/slurm/slurmdbd.log"
    fi
    sacctmgr -n list cluster format=cluster | grep -qw ci || sacctmgr -i add cluster ci >/dev/null
    sacctmgr -n list account format=account | grep -qw ci ||
        sacctmgr -i add account ci cluster=ci Description=ci Organization=ci >/dev/null
    for u in root ${SLURM_EXTRA_USERS:-}; do  # AccountingStorageEnforce: every submitter
        [ -n "$(sacctmgr -n -P show assoc where user="$u" account=ci format=account)" ] ||
            sacctmgr -i add user "$u" account=ci DefaultAccount=ci cluster=ci >/dev/null
    done
fi

if ! alive slurmctld slurmctld; then
    launch slurmctld /usr/sbin/slurmctld -D -i
fi
wait_for 30 scontrol ping || die "slurmctld does not answer, see /var/log/slurm/slurmctld.log"
alive slurmd slurmd || launch slurmd /usr/sbin/slurmd -D

# --- wait for the node (resume it if an earlier config left it DRAIN/DOWN/INVAL)
end=$((SECONDS + TIMEOUT))
while :; do
    st=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1)
    case $st in
        idle | mix | alloc) break ;;
        drain* | drng | down* | inval*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    [ $SECONDS -lt $end ] || die "node $NODE not idle after ${TIMEOUT}s (state '$st'), see /var/log/slurm/"
    sleep 0.5
done
echo "$RUN_DIR" >/run/slurm/start-slurm.rundir  # where the PIDs are, for stop-slurm.sh and tests
log "cluster up: node $NODE $st, $CPUS CPUs, $MEM_MB MB, $GPUS fake GPUs, accounting=$ACCOUNTING"
for n in munged mariadb slurmdbd slurmctld slurmd; do
    [ ! -s "$PIDS/$n.pid" ] || echo "$n $(cat "$PIDS/$n.pid")"
done
