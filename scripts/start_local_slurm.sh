#!/usr/bin/env bash
# Install and start a single-node Slurm on localhost (Debian, as root), for the tests of
# `fetalbench grid --launcher slurm` (tests/test_scale.py). Idempotent: it installs only what is
# missing, starts only the daemons that are not running, and leaves a running cluster alone.
# Steps as in docs/slurm-local.md: munge with a 1024-byte key, one node in the partition `debug`,
# slurmctld then slurmd, then wait until `sinfo` shows the node idle.
set -euo pipefail

node=$(hostname -s)
conf=/etc/slurm/slurm.conf

running() {  # running PIDFILE: the daemon whose pid is in PIDFILE is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_idle() {
  sinfo --noheader --nodes "$node" --format %t 2>/dev/null | grep -qx 'idle'
}

if ! command -v sbatch >/dev/null || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] \
    || [ ! -x /usr/sbin/munged ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y slurmctld slurmd slurm-client munge
fi

if [ -f "$conf" ] && running /run/slurmctld.pid && running /run/slurmd.pid && node_idle; then
  echo "Slurm is already running on $node"
  exit 0
fi

mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! running /run/munge/munged.pid; then
  if [ "$(stat -c %s /etc/munge/munge.key 2>/dev/null || echo 0)" -ne 1024 ]; then
    head -c 1024 /dev/urandom > /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  /usr/sbin/munged --force
fi

mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if ! running /run/slurmctld.pid; then
  cat > "$conf" <<EOF
ClusterName=local
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  /usr/sbin/slurmctld
fi
running /run/slurmd.pid || /usr/sbin/slurmd

for _ in $(seq 60); do
  if node_idle; then
    echo "Slurm is running on $node (partition debug)"
    exit 0
  fi
  sleep 1
done
echo "Slurm did not show $node idle within 60 s; see /var/log/slurm/" >&2
exit 1
