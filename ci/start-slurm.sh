#!/usr/bin/env bash
# Start a single-node Slurm on this machine (munge + slurmctld + slurmd) for the Slurm tests,
# or to try the Slurm backend. Installs Debian's slurm-wlm and munge if missing (as root).
# Safe to run again: it restarts the daemons with a fresh configuration.
set -euo pipefail
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
CONF_DIR=/etc/slurm
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
# stop what an earlier run of this script started, by its pid files (never by process name)
stop_pidfile() {
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=batchtools
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# start freed CPUs' next jobs within a second (defaults leave a single node idle for seconds)
SchedulerParameters=sched_min_interval=0,bf_interval=1,batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxArraySize=1001
MinJobAge=60
KillWait=2
Waittime=0
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
if ! { [ -s "$MUNGE_PID" ] && [ "$(cat /proc/"$(cat "$MUNGE_PID")"/comm 2>/dev/null)" = munged ]; }; then
  su -s /bin/sh munge -c "/usr/sbin/munged" 2>/dev/null || /usr/sbin/munged --force
fi
rm -f /var/spool/slurmctld/*state* 2>/dev/null || true
slurmctld -c
slurmd
for _ in $(seq 100); do
  if sinfo -h -o "%T" 2>/dev/null | grep -qx "idle"; then
    echo "slurm up: $(sinfo -h -o '%N %c CPUs %m MiB %T')"
    exit 0
  fi
  sleep 0.2
done
echo "Slurm did not come up; logs:" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
sinfo >&2 || true
exit 1
