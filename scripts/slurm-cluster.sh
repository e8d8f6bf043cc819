#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the integration tests (pytest -m slurm) and for trying
# the SLURM routes (`snakemake --profile slurm`, `dplase sweep --cluster slurm`) without a site cluster.
#
#   scripts/slurm-cluster.sh start    # install (first time), start munge, MariaDB, slurmdbd, slurmctld, slurmd
#   scripts/slurm-cluster.sh status   # daemons, node state; exit 0 when the node accepts jobs
#   scripts/slurm-cluster.sh stop     # cancel jobs, stop every daemon this script started (by PID)
#
# Needs root and Debian/Ubuntu packages (installed with apt-get on first start). No systemd needed.
# Everything (configs, spool, logs, database, PID files) lives under $DPLASE_SLURM_DIR (default
# /tmp/dplase-slurm); /etc/slurm/{slurm,gres,slurmdbd}.conf are symlinks into it, because jobs launched by the
# Snakemake SLURM plugin drop SLURM_CONF and read /etc/slurm/slurm.conf. The node has the machine's CPUs and
# two fake GPUs (gres.conf File=/dev/tty[0-1]), so GPU requests schedule and show in sacct's AllocTRES.
# `start` and `stop` are idempotent: a running daemon is left alone, a dead one is restarted.
# Settings (environment): DPLASE_SLURM_DIR (state dir), DPLASE_SLURM_ACCOUNT (dplase), DPLASE_SLURM_PARTITION
# (debug), DPLASE_SLURM_DB_PORT (3306; change it when a MySQL/MariaDB already listens there), DPLASE_SLURM_WAIT_S.

set -euo pipefail

STATE=${DPLASE_SLURM_DIR:-/tmp/dplase-slurm}
CLUSTER=${DPLASE_SLURM_CLUSTER:-dplase}
ACCOUNT=${DPLASE_SLURM_ACCOUNT:-dplase}       # the account profiles/slurm/config.yaml submits to
PARTITION=${DPLASE_SLURM_PARTITION:-debug}    # the partition profiles/slurm/config.yaml submits to
DB_PORT=${DPLASE_SLURM_DB_PORT:-3306}
DB_PASS=${DPLASE_SLURM_DB_PASS:-dplase-slurmdbd}
WAIT_S=${DPLASE_SLURM_WAIT_S:-120}
HOST=$(hostname -s)
PIDS=$STATE/pids
LOGS=$STATE/log
ETC=$STATE/etc
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
T0=$(date +%s%N)

log() {
    local ds=$(( ($(date +%s%N) - T0) / 100000000 ))
    printf '[slurm-cluster %4d.%ds] %s\n' $(( ds / 10 )) $(( ds % 10 )) "$*"
}
die() { log "ERROR: $*"; exit 1; }

# ---- PID bookkeeping: only daemons this script started are ever stopped --------------------------------------
alive() { [[ -s $PIDS/$1.pid ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

spawn() {  # spawn NAME COMMAND...: start a foreground daemon in the background, record its PID
    local name=$1; shift
    "$@" >>"$LOGS/$name.out" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    log "started $name (pid $!)"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds
    local what=$1 limit=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || die "timed out after ${limit}s waiting for $what (logs: $LOGS)"
        sleep 0.5
    done
}

stop_pid() {  # stop_pid NAME: SIGTERM, wait up to 20 s, then SIGKILL
    local name=$1 pid
    [[ -s $PIDS/$name.pid ]] || return 0
    pid=$(cat "$PIDS/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; log "killed $name (pid $pid)"
        else log "stopped $name (pid $pid)"; fi
    fi
    rm -f "$PIDS/$name.pid"
}

# ---- install ---------------------------------------------------------------------------------------------------
install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
    done
    (( ${#missing[@]} == 0 )) && { log "packages present: ${PACKAGES[*]}"; return; }
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    log "installing ${missing[*]}"
    # policy-rc.d exit 101 keeps the packages from starting their own (system-wide) services
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get update -q >"$STATE/apt.log" 2>&1 || { (( created_policy )) && rm -f "$policy"; die "apt-get update failed ($STATE/apt.log)"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$STATE/apt.log" 2>&1 \
        || { (( created_policy )) && rm -f "$policy"; die "apt-get install failed ($STATE/apt.log)"; }
    (( created_policy )) && rm -f "$policy"
    log "installed"
}

# ---- configuration ---------------------------------------------------------------------------------------------
write_configs() {
    local cpus mem_mb
    cpus=$(nproc)
    # below the memory slurmd detects (or the node is drained), leaving room for the daemons
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    cat >"$ETC/slurm.conf" <<EOF
# generated by scripts/slurm-cluster.sh: single-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MinJobAge=600
KillWait=10
JobRequeue=1
GresTypes=gpu
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # fake GPUs: a gres count needs File= devices, or the node is drained
    cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/tty[0-1]
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a world-readable config (it holds the DB password)
    chmod 644 "$ETC/slurm.conf" "$ETC/gres.conf"
}

link_configs() {
    mkdir -p /etc/slurm
    for f in slurm.conf gres.conf slurmdbd.conf; do
        if [[ -e /etc/slurm/$f && ! -L /etc/slurm/$f ]]; then
            die "/etc/slurm/$f is a real file (a site config?); move it away first"
        fi
        ln -sfn "$ETC/$f" "/etc/slurm/$f"
    done
}

# ---- daemons ---------------------------------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then log "munge answers (already running)"; return; fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || true; chown munge:munge /etc/munge/munge.key; }
    # setpriv execs (no fork), so the recorded PID is munged's own
    spawn munged setpriv --reuid=munge --regid=munge --init-groups -- munged -F
    wait_for munge 20 munge_ok
}

db() { mariadb --no-defaults -S "$STATE/run/mysqld.sock" -u root "$@"; }

start_mariadb() {
    if alive mariadb; then log "mariadb running"; return; fi
    if [[ ! -d $STATE/mysql/mysql ]]; then
        mkdir -p "$STATE/mysql"; chown mysql:mysql "$STATE/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >>"$LOGS/mariadb-install.log" 2>&1 || die "mariadb-install-db failed ($LOGS/mariadb-install.log)"
    fi
    spawn mariadb mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --bind-address=127.0.0.1 \
        --port="$DB_PORT" --socket="$STATE/run/mysqld.sock" --pid-file="$STATE/run/mysqld.pid" \
        --log-error="$LOGS/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=64M
    wait_for mariadb 60 mariadb-admin --no-defaults -S "$STATE/run/mysqld.sock" -u root ping
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
           CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
    if alive slurmdbd; then log "slurmdbd running"; return; fi
    spawn slurmdbd slurmdbd -D
    wait_for slurmdbd 60 sacctmgr -n show cluster
    if [[ -z $(sacctmgr -n -P show cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P show account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="dplase tests" Organization=dplase >/dev/null
    fi
    local user
    for user in root "${SUDO_USER:-root}"; do
        if [[ -z $(sacctmgr -n -P show assoc where user="$user" account="$ACCOUNT" format=user) ]]; then
            sacctmgr -i add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
        fi
    done
    log "accounting ready (cluster $CLUSTER, account $ACCOUNT)"
}

start_slurm() {
    if alive slurmctld; then log "slurmctld running"
    else spawn slurmctld slurmctld -D -i; fi
    wait_for slurmctld 60 scontrol ping
    if alive slurmd; then log "slurmd running"
    else spawn slurmd slurmd -D; fi
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1; }

wait_idle() {
    local deadline=$(( $(date +%s) + WAIT_S )) state
    while :; do
        state=$(node_state || true)
        case $state in
            idle|mixed|allocated|completing) log "node $HOST is $state"; return 0 ;;
            *drain*|down*|unknown*|"")
                # a fresh or restarted node comes up DOWN/UNKNOWN: return it to service
                scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
        esac
        (( $(date +%s) < deadline )) || die "node $HOST not idle after ${WAIT_S}s (state '$state'; logs: $LOGS)"
        sleep 1
    done
}

# ---- subcommands -----------------------------------------------------------------------------------------------
cmd_start() {
    [[ $(id -u) == 0 ]] || die "start needs root (it installs packages and starts system daemons)"
    mkdir -p "$STATE" "$PIDS" "$LOGS" "$ETC" "$STATE/run" "$STATE/ctld" "$STATE/slurmd"
    chmod 755 "$STATE" "$STATE/run"; chown mysql:mysql "$STATE/run" 2>/dev/null || true
    install_packages
    chown mysql:mysql "$STATE/run"
    alive slurmctld || alive slurmdbd || write_configs   # never rewrite the config under running daemons
    link_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    wait_idle
    log "cluster up: partition $PARTITION, account $ACCOUNT, node $HOST with $(nproc) CPUs and 2 fake GPUs; logs in $LOGS"
}

cmd_stop() {
    if [[ -d $PIDS ]] && alive slurmctld; then
        # jobs outlive slurmd (slurmstepd keeps them), so cancel them while the controller still answers
        scancel --full --partition="$PARTITION" >/dev/null 2>&1 || true
        local deadline=$(( $(date +%s) + 20 ))
        while [[ -n $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && (( $(date +%s) < deadline )); do sleep 0.5; done
    fi
    for name in slurmd slurmctld slurmdbd mariadb munged; do stop_pid "$name"; done
    for f in slurm.conf gres.conf slurmdbd.conf; do
        [[ -L /etc/slurm/$f && $(readlink "/etc/slurm/$f") == "$ETC/$f" ]] && rm -f "/etc/slurm/$f"
    done
    log "stopped (state kept in $STATE; remove it for a fresh cluster)"
}

cmd_status() {
    local name rc=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"; else echo "$name: not running"; fi
    done
    local state; state=$(node_state || true)
    echo "node $HOST: ${state:-unreachable}"
    case $state in idle|mixed|allocated|completing) ;; *) rc=1 ;; esac
    return $rc
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    *) echo "usage: $0 start|stop|status|restart   (state dir: $STATE)" >&2; exit 2 ;;
esac
