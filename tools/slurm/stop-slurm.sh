#!/usr/bin/env bash
# Stop the local SLURM cluster started by tools/slurm/start-slurm.sh.
#
# Usage (as root):  tools/slurm/stop-slurm.sh [RUN_DIR]
#   RUN_DIR  as given to start-slurm.sh (default: $SLURM_RUN_DIR, else the one it recorded)
# Cancels leftover jobs first (slurmstepd outlives slurmd otherwise), then stops each daemon
# whose PID start-slurm.sh recorded, in reverse start order: SIGTERM, SIGKILL after 15 s.
# Nothing is killed by name; a PID that now belongs to another program is left alone.
# Running it again, or with nothing started, does nothing.
set -uo pipefail

POINTER=/run/slurm/start-slurm.rundir  # written by start-slurm.sh
RUN_DIR=${1:-${SLURM_RUN_DIR:-$(cat "$POINTER" 2>/dev/null || echo /tmp/hessketch-slurm)}}
PIDS=$RUN_DIR/pids
log() { echo "[stop-slurm] $*" >&2; }

if [ -s "$PIDS/slurmctld.pid" ] && scontrol ping >/dev/null 2>&1; then
    ids=$(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${ids// /}" ]; then
        log "cancelling jobs $ids"
        # shellcheck disable=SC2086
        scancel $ids || true
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

stop_one() {  # stop_one NAME COMM
    local f=$PIDS/$1.pid p
    [ -s "$f" ] || return 0
    p=$(cat "$f")
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$2" ]; then
        log "$1 (pid $p) is not running"; rm -f "$f"; return 0
    fi
    kill -TERM "$p"
    for _ in $(seq 75); do [ -d "/proc/$p" ] || break; sleep 0.2; done
    if [ -d "/proc/$p" ]; then log "$1 (pid $p) ignored SIGTERM: SIGKILL"; kill -KILL "$p"; fi
    log "stopped $1 (pid $p)"
    rm -f "$f"
}
stop_one slurmd slurmd
stop_one slurmctld slurmctld
stop_one slurmdbd slurmdbd
stop_one mariadb mariadbd
stop_one munged munged
[ "$(cat "$POINTER" 2>/dev/null)" != "$RUN_DIR" ] || rm -f "$POINTER"
exit 0
