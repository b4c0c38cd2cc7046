#!/usr/bin/env bash
# Start a single-node Grid Engine (Debian's gridengine 8.1.9: sge_qmaster + sge_execd) on this
# machine for the SGE tests, or to try the SGE backend. Installs the packages if missing (as root).
# Safe to run again. Prints `export SGE_ROOT=... SGE_CELL=...` for `eval "$(bash ci/start-sge.sh)"`.
set -euo pipefail
HOST=$(hostname -s)
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
if ! command -v qsub >/dev/null 2>&1 || [ ! -x /usr/sbin/sge_qmaster ]; then
  # answer the packages' questions: this host is the master, configure the cluster now
  for pkg in gridengine-common gridengine-client gridengine-master; do
    printf '%s shared/gridenginemaster string %s\n%s shared/gridenginecell string default\n%s shared/gridengineconfig boolean true\n' \
      "$pkg" "$HOST" "$pkg" "$pkg"
  done | debconf-set-selections
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gridengine-master gridengine-exec gridengine-client >&2
fi
# Containers often map the host name to 127.0.0.1 next to "localhost"; SGE refuses a client whose
# address resolves to another name than the one it reports, so declare them one host.
echo "$HOST localhost $(hostname)" | tr ' ' '\n' | awk '!seen[$0]++' | paste -sd' ' > "$COMMON/host_aliases"
echo "$HOST" > "$COMMON/act_qmaster"
# stop what an earlier run of this script started, by its pid files (never by process name)
stop_by_pidfile() {  # FILE NAME: kill the process FILE names if it still is NAME
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}
for f in /var/spool/gridengine/execd/*/execd.pid; do stop_by_pidfile "$f" sge_execd; done
stop_by_pidfile /var/spool/gridengine/qmaster/qmaster.pid sge_qmaster
mkdir -p /var/spool/gridengine/execd
chown -R sgeadmin /var/spool/gridengine 2>/dev/null || true
/usr/sbin/sge_qmaster >&2
for _ in $(seq 50); do qstat >/dev/null 2>&1 && break; sleep 0.2; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
qconf -as "$HOST" >/dev/null 2>&1 || true
qconf -ah "$HOST" >/dev/null 2>&1 || true
# root may submit (the default minimum uid/gid is 1000)
qconf -sconf > global
sed -i 's/^min_uid .*/min_uid                      0/; s/^min_gid .*/min_gid                      0/' global
qconf -Mconf global >/dev/null
# schedule every second instead of every 15 s
qconf -ssconf > sconf
sed -i 's/^schedule_interval .*/schedule_interval                 0:0:1/; s/^flush_submit_sec .*/flush_submit_sec                  1/; s/^flush_finish_sec .*/flush_finish_sec                  1/' sconf
qconf -Msconf sconf >/dev/null
if ! qconf -se "$HOST" >/dev/null 2>&1; then
  printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$HOST" > exechost
  qconf -Ae exechost >/dev/null
fi
if ! qconf -sq all.q >/dev/null 2>&1; then
  cat > all.q <<Q
qname all.q
hostlist $HOST
seq_no 0
load_thresholds NONE
suspend_thresholds NONE
nsuspend 1
suspend_interval 00:05:00
priority 0
min_cpu_interval 00:05:00
processors UNDEFINED
qtype BATCH INTERACTIVE
ckpt_list NONE
pe_list NONE
rerun FALSE
slots $(nproc)
tmpdir /tmp
shell /bin/bash
prolog NONE
epilog NONE
shell_start_mode unix_behavior
starter_method NONE
suspend_method NONE
resume_method NONE
terminate_method NONE
notify 00:00:60
owner_list NONE
user_lists NONE
xuser_lists NONE
subordinate_list NONE
complex_values NONE
projects NONE
xprojects NONE
calendar NONE
initial_state default
s_rt INFINITY
h_rt INFINITY
s_cpu INFINITY
h_cpu INFINITY
s_fsize INFINITY
h_fsize INFINITY
s_data INFINITY
h_data INFINITY
s_stack INFINITY
h_stack INFINITY
s_core INFINITY
h_core INFINITY
s_rss INFINITY
h_rss INFINITY
s_vmem INFINITY
h_vmem INFINITY
Q
  qconf -Aq all.q >/dev/null
fi
/usr/sbin/sge_execd >&2
for _ in $(seq 100); do
  qmod -c all.q >/dev/null 2>&1 || true
  if qstat -f 2>/dev/null | awk -v q="all.q@$HOST" '$1 == q && NF == 5 {ok = 1} END {exit !ok}'; then
    echo "sge up: $(qstat -f | awk -v q="all.q@$HOST" '$1 == q {print $1, $3}')" >&2
    echo "export SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL"
    exit 0
  fi
  sleep 0.3
done
echo "Grid Engine did not come up:" >&2
qstat -f >&2 || true
tail -5 /var/spool/gridengine/qmaster/messages >&2 || true
exit 1
