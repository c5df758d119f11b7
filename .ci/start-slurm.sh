#!/usr/bin/env bash
# A throwaway single-node SLURM cluster for the `slurm` tests, as root: munged, slurmctld and
# slurmd with their config, state, logs and pid files in DIR (the daemons pick free ports, so
# a second cluster on the same machine does not collide with this one).
#
#   .ci/start-slurm.sh DIR     installs Debian's slurm-wlm and munge if missing, starts the
#                              cluster, waits until the node is idle and writes DIR/env
#                              (`source` it: SLURM_CONF, MSPE_TEST_SLURM) and DIR/stop.
#
# Accounting is off (no slurmdbd): `sacct` does not work, `squeue`/`scontrol` do.
set -euo pipefail
DIR=$(realpath "${1:?usage: $0 DIR}")
mkdir -p "$DIR/spool" "$DIR/state"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munged runs as the `munge` user with its socket in /run/munge; one per machine serves every
# cluster, so an already running one is reused.
if ! pgrep -u munge -x munged >/dev/null; then
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || { mungekey -c -f -k /etc/munge/munge.key 2>/dev/null ||
    /usr/sbin/create-munge-key -f >/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  su munge -s /bin/sh -c "/usr/sbin/munged"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
HOST=$(hostname -s)
cat > "$DIR/slurm.conf" <<EOF
ClusterName=mspe
SlurmctldHost=$HOST
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmUser=root
SlurmdUser=root
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
# Tests poll squeue/scontrol: finished jobs stay visible for a minute; a requeued task may
# start again within seconds.
MinJobAge=60
# A requeued job waits cred_expire seconds (default 120) before it may start again.
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=2,bf_interval=1
NodeName=$HOST CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

export SLURM_CONF="$DIR/slurm.conf"
/usr/sbin/slurmctld -c -f "$SLURM_CONF"   # -c: no state from an earlier run
/usr/sbin/slurmd -f "$SLURM_CONF"

cat > "$DIR/env" <<EOF
export SLURM_CONF=$SLURM_CONF
export MSPE_TEST_SLURM=1
EOF
cat > "$DIR/stop" <<EOF
#!/bin/sh
# Stops this cluster's daemons (munged stays: other clusters may use it).
for pid in \$(cat "$DIR/slurmd.pid" "$DIR/slurmctld.pid" 2>/dev/null); do kill "\$pid" 2>/dev/null; done
true
EOF
chmod +x "$DIR/stop"

for _ in $(seq 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
    echo "slurm: node $HOST idle ($(nproc) CPUs), SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm: the node did not become idle in 30 s; logs in $DIR" >&2
tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
