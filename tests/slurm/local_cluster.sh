#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on localhost (no systemd, nothing outside DIR is touched): a private munged
# (own key and socket in DIR), slurmctld and slurmd with a generated slurm.conf (8 CPUs declared, free ports),
# everything started in the foreground as children and stopped by PID.
#
# Standalone:   tests/slurm/local_cluster.sh up DIR      prints "export SLURM_CONF=DIR/slurm.conf"
#               tests/slurm/local_cluster.sh down DIR    stops exactly the daemons `up` started (DIR/pids)
# Sourced:      . tests/slurm/local_cluster.sh; slurm_local_up DIR || exit 77; ...; slurm_local_down DIR
# Needs root (slurmd launches jobs as the submitting user), munged, slurmctld, slurmd and the Slurm clients.
# slurm_local_up returns 1 (after printing why) when something is missing or does not start.

slurm_local_missing() {
  local b missing=()
  for b in munged munge unmunge slurmctld slurmd sbatch scontrol sinfo squeue scancel; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
  done
  [ "$(id -u)" = 0 ] || missing+=("root privileges (slurmd)")
  [ ${#missing[@]} -eq 0 ] || echo "${missing[*]}"
}

# Two free TCP ports on 127.0.0.1 (slurmctld, slurmd).
slurm_local_free_ports() {
  /usr/bin/python3 - <<'EOF' 2>/dev/null || echo "$((20000 + RANDOM % 20000)) $((40000 + RANDOM % 20000))"
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

slurm_local_up() {
  local dir=$1 ncpus=${2:-8}
  local missing
  missing=$(slurm_local_missing)
  if [ -n "$missing" ]; then
    echo "local Slurm: missing: $missing" >&2
    return 1
  fi
  local sbin=/usr/sbin
  export PATH="$PATH:$sbin"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  : >"$dir/pids"
  # munged checks that its key is private and its socket directory is not writable by others.
  install -d -m 0700 "$dir/munge-key"
  install -d -m 0755 "$dir/munge"
  dd if=/dev/urandom of="$dir/munge-key/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$dir/munge-key/munge.key"
  munged -F --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge-key/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    >"$dir/log/munged.out" 2>&1 &
  echo "munged $!" >>"$dir/pids"
  for _ in $(seq 50); do
    munge -S "$dir/munge/munge.sock" -n 2>/dev/null | unmunge -S "$dir/munge/munge.sock" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! munge -S "$dir/munge/munge.sock" -n 2>/dev/null | unmunge -S "$dir/munge/munge.sock" >/dev/null 2>&1; then
    echo "local Slurm: munged did not start:" >&2
    cat "$dir/log/munged.out" >&2
    return 1
  fi

  local ports ctld_port slurmd_port
  ports=$(slurm_local_free_ports)
  read -r ctld_port slurmd_port <<<"$ports"
  cat >"$dir/slurm.conf" <<EOF
ClusterName=amosprep-test
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$dir/munge/munge.sock,cred_expire=5
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
# sbatch --wait polls every 2 s only while that is below MinJobAge/2 (else 8 s, then 32 s).
MinJobAge=4
KillWait=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$ncpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$ncpus ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -D -i >"$dir/log/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$dir/pids"
  slurmd -D -N localhost >"$dir/log/slurmd.out" 2>&1 &
  echo "slurmd $!" >>"$dir/pids"
  for _ in $(seq 150); do
    [ "$(sinfo -h -n localhost -o %t 2>/dev/null)" = idle ] && return 0
    sleep 0.2
  done
  echo "local Slurm: node did not become idle (state '$(sinfo -h -n localhost -o %t 2>&1)'); logs:" >&2
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/log/slurmctld.out" "$dir/log/slurmd.out" >&2 2>/dev/null
  return 1
}

# Cancels what is left in the queue, then stops the daemons listed in DIR/pids (slurmd, slurmctld, munged) by PID.
slurm_local_down() {
  local dir=$1
  [ -f "$dir/pids" ] || return 0
  if [ -f "$dir/slurm.conf" ] && grep -q "^slurmctld " "$dir/pids"; then
    SLURM_CONF="$dir/slurm.conf" scancel --full --signal=KILL --user="$(id -un)" >/dev/null 2>&1 || true
    SLURM_CONF="$dir/slurm.conf" scancel --user="$(id -un)" >/dev/null 2>&1 || true
  fi
  local name pid
  for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$dir/pids")
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      # a zombie (parent is not waiting) counts as stopped
      [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ] && kill -9 "$pid" 2>/dev/null
  done
  : >"$dir/pids"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  case "${1:-}" in
    up)
      [ $# -ge 2 ] || { echo "usage: $0 up DIR [NCPUS]" >&2; exit 2; }
      slurm_local_up "$2" "${3:-8}" || exit 1
      echo "export SLURM_CONF=$(cd "$2" && pwd)/slurm.conf"
      ;;
    down)
      [ $# -ge 2 ] || { echo "usage: $0 down DIR" >&2; exit 2; }
      slurm_local_down "$2"
      ;;
    *)
      echo "usage: $0 up DIR [NCPUS] | down DIR" >&2
      exit 2
      ;;
  esac
fi
