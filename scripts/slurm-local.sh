#!/usr/bin/env bash
# A single-node Slurm on this machine, without systemd, to try `epsim study --slurm` (and for the
# test suite): `up` installs Debian's slurm-wlm and munge if needed (root; apt), writes
# /etc/slurm/slurm.conf (node line from `slurmd -C`, proctrack/linuxproc, task/none, loopback
# only), starts munged (as user munge), slurmctld -c and slurmd, and waits for the node to be idle;
# `down` stops slurmd, slurmctld, then munged. Measured facts: ../shared/reference/distributed.md.
# Idempotent: `up` on a running Slurm only waits for the node; `down` on a stopped one does nothing.
set -euo pipefail

die() { echo "slurm-local.sh: $*" >&2; exit 1; }

# Alive and not a zombie (no init reaps stopped daemons here).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

stop_pidfile() { # pidfile name
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid"; then
    kill "$pid"
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

running() { [ -f "$1" ] && alive "$(cat "$1")"; }

wait_idle() {
  for _ in $(seq 120); do
    case "$(sinfo -h -N -o %t 2>/dev/null | head -1)" in
      idle|mix|alloc) return 0 ;;
    esac
    sleep 0.5
  done
  die "the node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log"
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts daemons)"
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
  [ -f /etc/munge/munge.key ] || /usr/sbin/mungekey --create 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  # A pid file, not pgrep: without an init that reaps them, stopped daemons linger as zombies.
  running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null || die "munge does not work"
  if running /run/slurmctld.pid && running /run/slurmd.pid; then wait_idle; echo "slurm: up (already)"; return; fi
  local host node cpus mem
  host=$(hostname -s)
  node=$(/usr/sbin/slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node"); cpus=${cpus:-$(nproc)}
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node"); mem=${mem:-1000}
  # The node line as slurmd -C reports it (sockets, cores, threads), reached over loopback.
  node=$(sed -e "s/^NodeName=[^ ]*/NodeName=$host NodeHostname=$host NodeAddr=127.0.0.1/" \
             -e "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node")
  install -d /etc/slurm /var/lib/slurm/slurmd /var/lib/slurm/slurmctld /var/log/slurm
  cat > /etc/slurm/slurm.conf <<EOF
# Written by epsim's scripts/slurm-local.sh: a single-node Slurm on $host, loopback only.
ClusterName=localci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MaxArraySize=1001
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  [ "$cpus" -ge 1 ] || die "could not read the CPU count from slurmd -C"
  running /run/slurmctld.pid || /usr/sbin/slurmctld -c   # -c: clean state
  running /run/slurmd.pid || /usr/sbin/slurmd
  wait_idle
  echo "slurm: up ($host, $cpus CPUs, partition debug)"
}

down() {
  # slurmd first (no new job steps), then the controller, then munge.
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
  stop_pidfile /run/munge/munged.pid
  echo "slurm: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
