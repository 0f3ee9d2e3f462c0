#!/usr/bin/env bash
# Local PostgreSQL helper for development and tests.
#
# Usage:
#   scripts/pg.sh start DIR PORT [SETTING...]
#                                  initdb DIR if needed (SETTINGs, e.g. "max_connections = 100",
#                                  go to a new cluster's postgresql.conf), start it on
#                                  127.0.0.1:PORT, wait until it answers and create database "controlplane"
#   scripts/pg.sh stop DIR         stop the cluster in DIR (fast shutdown) if it is running
#   scripts/pg.sh destroy DIR      stop the cluster in DIR and delete its data
#   scripts/pg.sh url PORT [DB]    print the connection URL (DB defaults to "controlplane")
#
# The cluster trusts the postgres superuser (every other role logs in with its
# password) and listens on 127.0.0.1 only, so it is meant for a developer
# machine or a CI runner, never for production.
#
# This file is also sourced by scripts/test.sh and bench/run.sh for its
# helper functions (throwaway clusters among them); the command dispatch at
# the bottom only runs when it is executed directly.

set -euo pipefail

# Overridable only so the "postgres is not installed" path can be exercised.
PG_LIBDIR=${PG_LIBDIR:-/usr/lib/postgresql}
# Postgres refuses to run as root, so as root we run the server as this user.
PG_OS_USER=postgres

pg_log() { printf 'pg.sh: %s\n' "$*" >&2; }
pg_die() { pg_log "error: $*"; exit 1; }

pg_is_root() { [[ $(id -u) -eq 0 ]]; }

# Clear libpq variables so a developer's PGHOST/PGSSLMODE/... cannot redirect
# our psql/pg_isready calls (or the Go tests) to some other server.
pg_clean_env() {
	unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGPASSFILE \
		PGSERVICE PGSERVICEFILE PGSSLMODE PGOPTIONS PGDATA PGTARGETSESSIONATTRS
}

# The binaries we use; all come with Debian's postgresql-NN package.
PG_TOOLS="initdb pg_ctl pg_isready psql"

pg_has_tools() {
	local t
	for t in $PG_TOOLS; do
		[[ -x $1/$t ]] || return 1
	done
}

# Newest /usr/lib/postgresql/<version>/bin that has an initdb, or nothing.
pg_find_bindir() {
	local d best=""
	# sort -V so that 9.6 < 10 < 15 < 16.
	while IFS= read -r d; do
		[[ -x "$d/initdb" ]] && best=$d
	done < <(compgen -G "$PG_LIBDIR/*/bin" | sort -V || true)
	printf '%s' "$best"
}

# Installs the distribution's postgresql package. On Debian the package may
# create and start a "main" cluster on port 5432; we never use it, so stop any
# cluster that this install brought up to avoid leaving a stray server behind.
pg_install() {
	local sudo=()
	if ! pg_is_root; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			pg_die "PostgreSQL is not installed (no initdb under $PG_LIBDIR/*/bin); install it with 'apt-get install postgresql' or run as root"
		fi
	fi
	command -v apt-get >/dev/null ||
		pg_die "PostgreSQL is not installed and apt-get is not available; install PostgreSQL (initdb, pg_ctl) manually"

	local before=""
	if command -v pg_lsclusters >/dev/null; then
		before=$(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' || true)
	fi

	pg_log "PostgreSQL not found, installing it with apt-get (this takes a minute)..."
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
		pg_die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null ||
		pg_die "apt-get install postgresql failed"

	if command -v pg_lsclusters >/dev/null; then
		local ver name status
		while read -r ver name _ status _; do
			[[ $status == online ]] || continue
			grep -qxF "$ver/$name" <<<"$before" && continue
			pg_log "stopping the cluster $ver/$name that the postgresql package started"
			"${sudo[@]}" pg_ctlcluster "$ver" "$name" stop || true
		done < <(pg_lsclusters -h 2>/dev/null || true)
	fi
}

# Sets PG_BIN to the directory holding initdb/pg_ctl/psql, installing the
# server if needed. If DIR (optional) already holds a cluster, prefer the
# binaries of that cluster's major version: a newer pg_ctl cannot start it.
pg_setup_bin() {
	local datadir=${1:-} want=""
	if [[ -n $datadir && -f $datadir/PG_VERSION ]]; then
		want=$(<"$datadir/PG_VERSION")
		if [[ -x $PG_LIBDIR/$want/bin/pg_ctl ]]; then
			PG_BIN=$PG_LIBDIR/$want/bin
			return
		fi
	fi
	PG_BIN=$(pg_find_bindir)
	if [[ -z $PG_BIN ]] && command -v initdb >/dev/null; then
		# Not Debian's layout (e.g. Homebrew, or a distribution that puts the
		# server binaries on PATH). Resolve symlinks: a lone initdb symlink in
		# /usr/local/bin does not mean pg_isready and psql sit next to it.
		PG_BIN=$(dirname "$(realpath "$(command -v initdb)")")
		pg_has_tools "$PG_BIN" || PG_BIN=""
	fi
	if [[ -z $PG_BIN ]]; then
		pg_install
		PG_BIN=$(pg_find_bindir)
		[[ -n $PG_BIN ]] || pg_die "installed postgresql but found no initdb under $PG_LIBDIR/*/bin"
	fi
	pg_has_tools "$PG_BIN" || pg_die "$PG_BIN lacks one of: $PG_TOOLS"
	if [[ -n $want ]]; then
		local have
		have=$("$PG_BIN/pg_ctl" --version | awk '{print $3}' | cut -d. -f1)
		[[ $have == "$want" ]] ||
			pg_die "the cluster in $datadir is PostgreSQL $want but only $have is installed; delete it (make db-reset) or install postgresql-$want"
	fi
}

# runuser lives in /usr/sbin, which a minimal PATH (env -i, some CI runners)
# leaves out.
pg_runuser() {
	local r
	for r in "$(command -v runuser || true)" /usr/sbin/runuser /sbin/runuser; do
		if [[ -n $r && -x $r ]]; then
			printf '%s' "$r"
			return 0
		fi
	done
	pg_die "runuser not found (util-linux); it is needed to run postgres as $PG_OS_USER when root"
}

# Runs a server-side command (initdb, pg_ctl) as the user that owns the
# cluster. From / so the command never trips over an unreadable cwd (e.g. a
# mode-700 checkout when we switch from root to postgres).
pg_run() {
	if pg_is_root; then
		local ru
		ru=$(pg_runuser)
		(cd / && "$ru" -u "$PG_OS_USER" -- "$@")
	else
		(cd / && "$@")
	fi
}

# When root, pick the OS user for an existing cluster: whoever owns it (a
# developer may have created it without sudo), postgres for a new one.
pg_pick_os_user() {
	local datadir=$1 owner
	PG_OS_USER=postgres
	pg_is_root || return 0
	if [[ -f $datadir/PG_VERSION ]]; then
		owner=$(stat -c %U "$datadir")
		if [[ $owner != root && $owner != UNKNOWN ]]; then
			PG_OS_USER=$owner
		fi
	fi
	id -u "$PG_OS_USER" >/dev/null 2>&1 ||
		pg_die "user '$PG_OS_USER' does not exist (it comes with the postgresql package); cannot run postgres as root"
}

# initdb into DATADIR (which must exist, be empty and owned by the server
# user). Extra arguments are appended to postgresql.conf. PG_INITDB_ARGS holds
# extra initdb flags (scripts/test.sh adds --no-sync for throwaway clusters).
PG_INITDB_ARGS=()
pg_initdb() {
	local datadir=$1
	shift
	local out out2
	# Debian's glibc has a built-in C.UTF-8; other systems may not.
	if ! out=$(pg_run "$PG_BIN/initdb" -D "$datadir" --auth=trust -U postgres \
		--encoding=UTF8 --locale=C.UTF-8 "${PG_INITDB_ARGS[@]}" 2>&1); then
		pg_log "initdb with --locale=C.UTF-8 failed, retrying with --no-locale"
		# initdb removes what it created inside an existing directory on failure.
		if ! out2=$(pg_run "$PG_BIN/initdb" -D "$datadir" --auth=trust -U postgres \
			--encoding=UTF8 --no-locale "${PG_INITDB_ARGS[@]}" 2>&1); then
			printf '%s\n--- with --no-locale:\n%s\n' "$out" "$out2" >&2
			pg_die "initdb failed for $datadir"
		fi
	fi
	# Only the postgres superuser (the control plane's own role here) logs in
	# without a password; every other role (the tenants' roles) must give
	# its password, as on a real server. With trust for everyone, any role
	# could log in as any other and the isolation tests would prove nothing.
	pg_run tee "$datadir/pg_hba.conf" >/dev/null <<-'HBA'
		# Written by scripts/pg.sh: local development/test cluster.
		local all postgres trust
		host  all postgres 127.0.0.1/32 trust
		host  all postgres ::1/128 trust
		local all all scram-sha-256
		host  all all 127.0.0.1/32 scram-sha-256
		host  all all ::1/128 scram-sha-256
		local replication postgres trust
		host  replication postgres 127.0.0.1/32 trust
	HBA
	{
		echo
		echo "# Added by scripts/pg.sh: local development/test cluster."
		echo "listen_addresses = '127.0.0.1'"
		echo "max_connections = 300"
		local line
		for line in "$@"; do
			echo "$line"
		done
	} | pg_run tee -a "$datadir/postgresql.conf" >/dev/null
}

# True if a postmaster is running for DATADIR.
pg_running() {
	local rc=0
	pg_run "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1 || rc=$?
	[[ $rc -eq 0 ]]
}

# Starts the cluster in DATADIR on PORT, logging to LOGFILE, with its unix
# socket in SOCKDIR. Port and socket are passed on every start rather than
# written to postgresql.conf so a moved directory or a new port just works.
# On failure prints pg_ctl's output and the log tail and returns 1, except
# that with QUIET_BIND=1 a port conflict silently returns 2 (the caller picks
# another port).
pg_start_cluster() {
	local datadir=$1 port=$2 logfile=$3 sockdir=$4 quiet_bind=${5:-0}
	# sun_path is limited to 107 bytes; a deep checkout would make postgres
	# refuse to start. We only connect over TCP, so then skip the socket.
	if ((${#sockdir} + 20 > 107)); then
		sockdir=""
	fi
	[[ $sockdir != *"'"* ]] || pg_die "path must not contain a single quote: $sockdir"
	local logsize=0 out
	[[ -f $logfile ]] && logsize=$(stat -c %s "$logfile")
	# pg_ctl hands -o to /bin/sh, hence the inner single quotes.
	# wal_level=logical on every start (it takes a restart, so an older
	# cluster gets it at its next start): the source of an online tenant
	# move needs it (docs/OPERATIONS.md, "Moving a tenant"). PG_WAL_LEVEL
	# only for the test of a server without it.
	local wal_level=${PG_WAL_LEVEL:-logical}
	[[ $wal_level =~ ^(replica|logical)$ ]] || pg_die "PG_WAL_LEVEL must be replica or logical, not $wal_level"
	if out=$(pg_run "$PG_BIN/pg_ctl" start -D "$datadir" -l "$logfile" -w -t 60 \
		-o "-p $port -k '$sockdir' -c wal_level=$wal_level" 2>&1); then
		return 0
	fi
	# Only look at what this attempt logged.
	if [[ $quiet_bind == 1 ]] &&
		tail -c "+$((logsize + 1))" "$logfile" 2>/dev/null | grep -q 'could not bind'; then
		return 2
	fi
	printf '%s\n' "$out" >&2
	pg_log "postgres failed to start; last lines of $logfile:"
	tail -n 30 "$logfile" >&2 || true
	return 1
}

# Waits until the server on 127.0.0.1:PORT accepts connections.
pg_wait_ready() {
	local port=$1 i
	for ((i = 0; i < 300; i++)); do
		if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres; then
			return 0
		fi
		sleep 0.1
	done
	pg_log "postgres on 127.0.0.1:$port did not become ready within 30s"
	return 1
}

# Stops the cluster in DATADIR with the given shutdown mode if it is running.
pg_stop_cluster() {
	local datadir=$1 mode=${2:-fast}
	if pg_running "$datadir"; then
		pg_run "$PG_BIN/pg_ctl" stop -D "$datadir" -m "$mode" -w -t 60 >/dev/null
	fi
}

# ---- Throwaway clusters (scripts/test.sh, bench/run.sh) -------------------

# A random start in 55000-59999 keeps parallel runs from racing for the same
# port; then walk up until nothing listens there.
pg_free_port() {
	local port=$((55000 + RANDOM % 5000)) i
	for ((i = 0; i < 200; i++)); do
		if command -v ss >/dev/null; then
			# All states, not just listeners: a connection bound to the port
			# (it is inside the kernel's ephemeral range) also blocks it.
			if [[ -z $(ss -tanH "sport = :$port" 2>/dev/null) ]]; then
				echo "$port"
				return 0
			fi
		elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
		port=$((port >= 59999 ? 55000 : port + 1))
	done
	pg_die "no free port found in 55000-59999"
}

# PG_TMP_ROOT is the folder of the throwaway cluster (data in
# $PG_TMP_ROOT/data), set by pg_throwaway_init, removed by
# pg_throwaway_cleanup.
PG_TMP_ROOT=""

# pg_memory_dir prints /dev/shm if it is a tmpfs with at least 4 GiB free,
# or nothing. A cluster there writes its files to memory: creating a
# database (a copy of its template's files) costs about a third less CPU
# than on a disk, where the kernel also journals and writes back.
pg_memory_dir() {
	local avail
	[[ -d /dev/shm && -w /dev/shm ]] || return 0
	[[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] || return 0
	avail=$(df --output=avail -k /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
	[[ $avail =~ ^[0-9]+$ ]] && ((avail >= 4 * 1024 * 1024)) && echo /dev/shm
	return 0
}

# pg_throwaway_init NAME [SETTING...]: initdb a cluster in a new folder
# $PG_TMP_BASE/NAME.XXXXXX (PG_TMP_BASE defaults to /tmp) with fsync off
# (nothing in it must survive a crash) and the extra postgresql.conf
# settings. Under /tmp, not the checkout: when we are root, postgres must
# be able to traverse to it, and a clone may sit in a mode-700 folder.
pg_throwaway_init() {
	local name=$1
	shift
	pg_clean_env
	pg_setup_bin
	PG_TMP_ROOT=$(mktemp -d "${PG_TMP_BASE:-/tmp}/$name.XXXXXX")
	mkdir "$PG_TMP_ROOT/data"
	if pg_is_root; then
		id -u "$PG_OS_USER" >/dev/null 2>&1 || pg_die "user $PG_OS_USER does not exist"
		chown -R "$PG_OS_USER": "$PG_TMP_ROOT"
	fi
	chmod 700 "$PG_TMP_ROOT/data"
	PG_INITDB_ARGS=(--no-sync)
	pg_initdb "$PG_TMP_ROOT/data" "fsync = off" "synchronous_commit = off" "full_page_writes = off" "$@"
}

# pg_throwaway_start: start the cluster of pg_throwaway_init on a free port
# (PG_PORT) and export DATABASE_URL (its "postgres" database, as user
# postgres).
PG_PORT=""
pg_throwaway_start() {
	# Another process can grab the port between the check and the bind: retry.
	local attempt port rc
	for attempt in 1 2 3 4 5; do
		port=$(pg_free_port)
		rc=0
		pg_start_cluster "$PG_TMP_ROOT/data" "$port" "$PG_TMP_ROOT/postgres.log" "$PG_TMP_ROOT" 1 || rc=$?
		if ((rc == 0)); then
			pg_wait_ready "$port"
			PG_PORT=$port
			export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			pg_log "throwaway postgres on 127.0.0.1:$port (in $PG_TMP_ROOT)"
			return 0
		fi
		((rc == 2)) || break
		pg_log "port $port was taken, trying another one (attempt $attempt)"
	done
	pg_die "could not start the throwaway postgres"
}

# pg_throwaway_cleanup: stop the throwaway cluster, if any, and remove its
# folder. Immediate shutdown: nothing in it is worth a checkpoint; and if
# pg_ctl fails (a half-started server), the postmaster is killed.
pg_throwaway_cleanup() {
	pg_pooler_stop
	[[ -n $PG_TMP_ROOT ]] || return 0
	if [[ -f $PG_TMP_ROOT/data/postmaster.pid ]]; then
		pg_stop_cluster "$PG_TMP_ROOT/data" immediate || true
	fi
	if [[ -f $PG_TMP_ROOT/data/postmaster.pid ]]; then
		local pid
		pid=$(head -n 1 "$PG_TMP_ROOT/data/postmaster.pid" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf -- "$PG_TMP_ROOT"
	PG_TMP_ROOT=""
}

# ---- PgBouncer in front of a throwaway cluster (scripts/test.sh) -----------

# PG_POOLER_DIR holds the running pooler's config, log and pid file, set by
# pg_pooler_start, emptied by pg_pooler_stop.
PG_POOLER_DIR=""

# pg_apt_install PACKAGE SERVICE WHY MANUAL: install a Debian package the
# tests need (as root, or through passwordless sudo), and stop the SERVICE
# the install may have started: the tests run private instances of their
# own. WHY says what it is for and MANUAL what to do without apt-get, in
# the errors.
pg_apt_install() {
	local pkg=$1 service=$2 why=$3 manual=$4 sudo=()
	if ! pg_is_root; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			pg_die "$pkg is not installed ($why); install it with 'apt-get install $pkg' or run as root"
		fi
	fi
	command -v apt-get >/dev/null || pg_die "$pkg is not installed and apt-get is not available; $manual"
	local was_active=0
	command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null && was_active=1
	pg_log "$pkg not found, installing it with apt-get..."
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || pg_die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
		pg_die "apt-get install $pkg failed"
	if ((was_active == 0)) && command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
		pg_log "stopping the $service service that the package started"
		"${sudo[@]}" systemctl stop "$service" || true
	fi
}

# Sets PG_POOLER_BIN to pgbouncer, installing Debian's package if missing.
# The package may start its own pgbouncer (systemd, port 6432); we never use
# it, so stop it if this install brought it up.
pg_pooler_setup_bin() {
	PG_POOLER_BIN=$(command -v pgbouncer || true)
	[[ -n $PG_POOLER_BIN ]] || { [[ -x /usr/sbin/pgbouncer ]] && PG_POOLER_BIN=/usr/sbin/pgbouncer; } || true
	[[ -z $PG_POOLER_BIN ]] || return 0
	pg_apt_install pgbouncer pgbouncer "the tests route tenant traffic through it" "install PgBouncer (1.18 or newer) manually"
	PG_POOLER_BIN=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
	[[ -x $PG_POOLER_BIN ]] || pg_die "installed pgbouncer but found no pgbouncer binary"
}

# pg_pooler_start DIR PGPORT: start a private PgBouncer in transaction
# pooling mode on a free port of 127.0.0.1, in front of the cluster on
# 127.0.0.1:PGPORT, with its config, log and pid file in DIR (created, owned
# by the server user); export PGTEST_POOLER_URL (its "postgres" database, as
# user postgres, also its admin: tests read SHOW POOLS from its console).
# Every database name passes through (the wildcard entry).
#
# Authentication mirrors the cluster's pg_hba.conf: postgres is trusted, as
# the cluster trusts it; every other role (the tenants') gives its SCRAM
# password, which PgBouncer checks against the secret auth_query reads from
# pg_authid as postgres, and then reuses to log in to the server (SCRAM
# pass-through), so no password is written anywhere.
pg_pooler_start() {
	local dir=$1 pgport=$2
	pg_pooler_setup_bin
	mkdir -p "$dir"
	[[ $dir =~ ^[A-Za-z0-9/._+-]+$ ]] || pg_die "the pooler's folder must be a plain path (letters, digits, / . _ + -): $dir"
	cat >"$dir/hba.conf" <<-'HBA'
		host all postgres 127.0.0.1/32 trust
		host all all 127.0.0.1/32 scram-sha-256
	HBA
	# auth_user needs an entry; its password is never asked (trusted).
	printf '"postgres" ""\n' >"$dir/userlist.txt"
	if pg_is_root; then
		chown -R "$PG_OS_USER": "$dir"
	fi
	chmod 700 "$dir"
	local attempt port i
	for attempt in 1 2 3 4 5; do
		port=$(pg_free_port)
		# server_idle_timeout is short so that server connections to the
		# tests' databases, dropped at the end of each test, do not pile up
		# against the cluster's max_connections. max_client_conn stays
		# under the 1,024 descriptors runuser's session gets.
		pg_run tee "$dir/pgbouncer.ini" >/dev/null <<-INI
			; Written by scripts/pg.sh: a private PgBouncer for the tests.
			[databases]
			* = host=127.0.0.1 port=$pgport

			[pgbouncer]
			listen_addr = 127.0.0.1
			listen_port = $port
			unix_socket_dir =
			pool_mode = transaction
			auth_type = hba
			auth_hba_file = $dir/hba.conf
			auth_file = $dir/userlist.txt
			auth_user = postgres
			auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = \$1
			max_client_conn = 800
			default_pool_size = 20
			server_idle_timeout = 10
			admin_users = postgres
			logfile = $dir/pgbouncer.log
			pidfile = $dir/pgbouncer.pid
		INI
		pg_run "$PG_POOLER_BIN" -d "$dir/pgbouncer.ini" ||
			{ cat "$dir/pgbouncer.log" >&2 2>/dev/null; pg_die "pgbouncer failed to start"; }
		# It forks before it binds: its log says which happened. Only then
		# ask the port, which could be someone else's on a failed bind.
		for ((i = 0; i < 100; i++)); do
			grep -q -e "listening on 127.0.0.1:$port" -e FATAL "$dir/pgbouncer.log" 2>/dev/null && break
			sleep 0.1
		done
		if grep -q "listening on 127.0.0.1:$port" "$dir/pgbouncer.log" 2>/dev/null &&
			"$PG_BIN/pg_isready" -q -t 10 -h 127.0.0.1 -p "$port" -d postgres -U postgres; then
			PG_POOLER_DIR=$dir
			export PGTEST_POOLER_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			pg_log "throwaway pgbouncer on 127.0.0.1:$port (transaction pooling, in $dir)"
			return 0
		fi
		PG_POOLER_DIR=$dir pg_pooler_stop
		if grep -q 'Address already in use' "$dir/pgbouncer.log" 2>/dev/null; then
			pg_log "port $port was taken, trying another one (attempt $attempt)"
			pg_run rm -f "$dir/pgbouncer.log"
			continue
		fi
		tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null || true
		pg_die "pgbouncer on 127.0.0.1:$port did not start"
	done
	pg_die "could not start the throwaway pgbouncer"
}

# pg_pooler_stop: stop the pooler of pg_pooler_start (by the pid it wrote),
# if any, and wait until it is gone. Its folder is left to its owner.
pg_pooler_stop() {
	[[ -n $PG_POOLER_DIR ]] || return 0
	local pid i
	pid=$(cat "$PG_POOLER_DIR/pgbouncer.pid" 2>/dev/null || true)
	if [[ $pid =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		# Only a pooler still there after 5 s gets SIGKILL.
		if ((i == 50)); then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	PG_POOLER_DIR=""
}

# pg_run_group CMD...: run CMD in the background in a process group of its
# own (setsid), so that pg_stop_group can signal it as a whole, and so that
# a signal aimed at the calling script is handled at once by its trap rather
# than after CMD ends. (bash's `set -m` would do the same but grabs the
# terminal and can stop a backgrounded make with SIGTTIN.) Sets PG_GROUP_PID.
PG_GROUP_PID=""
pg_run_group() {
	if command -v setsid >/dev/null; then
		setsid "$@" &
	else
		"$@" &
	fi
	PG_GROUP_PID=$!
}

# pg_stop_group TENTHS: SIGINT the group of pg_run_group, give it TENTHS
# tenths of a second to stop (go test removes its work folder on SIGINT,
# not on SIGTERM; the benchmark harness drops what it made), then SIGKILL.
pg_stop_group() {
	local tenths=$1 i
	[[ -n $PG_GROUP_PID ]] || return 0
	kill -INT -- "-$PG_GROUP_PID" 2>/dev/null || kill -INT "$PG_GROUP_PID" 2>/dev/null || true
	for ((i = 0; i < tenths; i++)); do
		kill -0 "$PG_GROUP_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$PG_GROUP_PID" 2>/dev/null || kill -KILL "$PG_GROUP_PID" 2>/dev/null || true
	wait "$PG_GROUP_PID" 2>/dev/null || true
}

# pg_wait_group: wait for the group of pg_run_group; returns its exit code.
pg_wait_group() {
	local rc=0
	wait "$PG_GROUP_PID" || rc=$?
	PG_GROUP_PID=""
	return "$rc"
}

pg_check_port() {
	if ! [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] || (($1 > 65535)); then
		pg_die "invalid port: $1"
	fi
}

# Absolute path without requiring it to exist, so relative DIRs keep working
# after we cd / for the server commands.
pg_abspath() {
	realpath -m -- "$1"
}

# As root, postgres must be able to reach the data directory. A checkout in a
# mode-700 folder (e.g. mktemp -d) is not traversable by postgres, so such a
# cluster lives under /var/tmp instead, in a folder named after DIR's hash.
pg_fallback_dir() {
	local hash
	hash=$(printf '%s' "$1" | sha256sum | cut -c1-12)
	printf '/var/tmp/controlplane-pg-%s' "$hash"
}

# Prints the directory that really holds the cluster for DIR. With "create"
# it also makes the directory and hands it to the server user.
pg_resolve_datadir() {
	local dir=$1 create=${2:-}
	pg_is_root || {
		printf '%s' "$dir"
		return
	}
	local fallback
	fallback=$(pg_fallback_dir "$dir")
	if [[ -z $create ]]; then
		# stop/destroy: use whichever exists; DIR wins if it holds a cluster.
		if [[ ! -f $dir/PG_VERSION && -f $fallback/PG_VERSION ]]; then
			printf '%s' "$fallback"
		else
			printf '%s' "$dir"
		fi
		return
	fi
	if [[ -f $dir/PG_VERSION ]]; then
		printf '%s' "$dir"
		return
	fi
	mkdir -p "$dir"
	chown "$PG_OS_USER": "$dir"
	chmod 700 "$dir"
	local ru
	ru=$(pg_runuser)
	if "$ru" -u "$PG_OS_USER" -- test -x "$dir"; then
		printf '%s' "$dir"
		return
	fi
	[[ ! -L $fallback ]] || pg_die "$fallback is a symlink, refusing to use it"
	pg_log "$PG_OS_USER cannot reach $dir (a parent folder is not traversable); using $fallback instead"
	mkdir -p "$fallback"
	chown "$PG_OS_USER": "$fallback"
	chmod 700 "$fallback"
	printf '%s' "$fallback"
}

pg_cmd_start() {
	(($# >= 2)) || pg_usage
	local arg=$1 dir port datadir
	dir=$(pg_abspath "$1")
	port=$2
	shift 2
	pg_check_port "$port"
	pg_pick_os_user "$dir"
	pg_setup_bin "$dir"
	datadir=$(pg_resolve_datadir "$dir" create)
	if [[ $datadir != "$dir" ]]; then
		# The fallback may hold an older cluster: match its binaries too.
		pg_setup_bin "$datadir"
	fi

	if [[ ! -f $datadir/PG_VERSION ]]; then
		pg_is_root || { mkdir -p "$datadir" && chmod 700 "$datadir"; }
		pg_log "initializing a new cluster in $datadir"
		pg_initdb "$datadir" "$@"
	fi

	if pg_running "$datadir"; then
		# Line 4 of postmaster.pid is the port; a different one means the
		# caller would wait on a port nobody listens on.
		local running_port
		running_port=$(sed -n 4p "$datadir/postmaster.pid" 2>/dev/null || true)
		if [[ -n $running_port && $running_port != "$port" ]]; then
			pg_die "the cluster in $datadir is already running on port $running_port, not $port; stop it first (scripts/pg.sh stop $arg)"
		fi
	else
		pg_start_cluster "$datadir" "$port" "$datadir/postgres.log" "$datadir"
	fi
	pg_wait_ready "$port"

	local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
	if [[ -z $("${psql[@]}" -tAc "select 1 from pg_database where datname = 'controlplane'") ]]; then
		"${psql[@]}" -c 'create database controlplane'
		pg_log "created database controlplane"
	fi
	pg_log "postgres is running on 127.0.0.1:$port (data: $datadir)"
}

pg_cmd_stop() {
	(($# == 1)) || pg_usage
	local dir datadir
	dir=$(pg_abspath "$1")
	datadir=$(pg_resolve_datadir "$dir")
	if [[ ! -f $datadir/PG_VERSION ]]; then
		pg_log "no cluster in $dir, nothing to stop"
		return 0
	fi
	pg_pick_os_user "$datadir"
	pg_setup_bin "$datadir"
	if pg_running "$datadir"; then
		pg_stop_cluster "$datadir" fast
		pg_log "stopped postgres in $datadir"
	else
		pg_log "postgres in $datadir is not running"
	fi
}

pg_cmd_destroy() {
	(($# == 1)) || pg_usage
	local dir datadir
	dir=$(pg_abspath "$1")
	pg_cmd_stop "$1"
	datadir=$(pg_resolve_datadir "$dir")
	rm -rf -- "$dir"
	if [[ $datadir != "$dir" ]]; then
		rm -rf -- "$datadir"
	fi
	pg_log "deleted $datadir"
}

pg_cmd_url() {
	(($# == 1 || $# == 2)) || pg_usage
	pg_check_port "$1"
	printf 'postgres://postgres@127.0.0.1:%s/%s?sslmode=disable\n' "$1" "${2:-controlplane}"
}

# pooler-start DIR PGPORT: a private PgBouncer (pg_pooler_start) in front of
# the cluster on 127.0.0.1:PGPORT, its files in DIR; prints its URL.
pg_cmd_pooler_start() {
	(($# == 2)) || pg_usage
	pg_check_port "$2"
	pg_pick_os_user ""
	pg_setup_bin
	pg_pooler_start "$(pg_abspath "$1")" "$2"
	printf '%s\n' "$PGTEST_POOLER_URL"
}

# pooler-stop DIR: stop the PgBouncer of pooler-start DIR, if it runs.
pg_cmd_pooler_stop() {
	(($# == 1)) || pg_usage
	PG_POOLER_DIR=$(pg_abspath "$1")
	pg_pooler_stop
}

pg_usage() {
	cat >&2 <<'EOF'
usage:
  scripts/pg.sh start DIR PORT [SETTING...]
                                 create the cluster in DIR if needed (SETTINGs go to its postgresql.conf),
                                 start it on 127.0.0.1:PORT, create database controlplane
  scripts/pg.sh stop DIR         stop the cluster in DIR if it is running
  scripts/pg.sh destroy DIR      stop the cluster in DIR and delete its data
  scripts/pg.sh url PORT [DB]    print postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable (DB defaults to controlplane)
  scripts/pg.sh pooler-start DIR PGPORT
                                 start a PgBouncer (transaction pooling) in front of 127.0.0.1:PGPORT, files in DIR; print its URL
  scripts/pg.sh pooler-stop DIR  stop that PgBouncer
EOF
	exit 2
}

pg_main() {
	(($# >= 1)) || pg_usage
	local cmd=$1
	shift
	pg_clean_env
	case $cmd in
	start) pg_cmd_start "$@" ;;
	stop) pg_cmd_stop "$@" ;;
	destroy) pg_cmd_destroy "$@" ;;
	url) pg_cmd_url "$@" ;;
	pooler-start) pg_cmd_pooler_start "$@" ;;
	pooler-stop) pg_cmd_pooler_stop "$@" ;;
	-h | --help | help) pg_usage ;;
	*) pg_usage ;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	pg_main "$@"
fi
