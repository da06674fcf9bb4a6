# Helpers for scripts: make sure the local Postgres and Redis answer. Source, don't run.

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# host and port of a URL like scheme://user@host:port/db
url_host() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; echo "${rest%%:*}"; }
url_port() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; [[ "$rest" == *:* ]] && echo "${rest##*:}" || echo "$2"; }

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" ]]; }

wait_until_answers() {
  local name=$1 host=$2 port=$3
  for _ in $(seq 1 60); do answers "$host" "$port" && return 0; sleep 0.5; done
  die "$name on $host:$port did not start within 30 s"
}

apt_install() {
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null ||
    die "$1 is not installed; install it (Debian: apt-get install $1) or point the URL at a running server"
  step "installing $1 with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

ensure_postgres() {
  local host port; host=$(url_host "$1"); port=$(url_port "$1" 5432)
  answers "$host" "$port" && return 0
  is_local "$host" || die "Postgres at $host:$port does not answer; start it or fix DATABASE_URL"
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
    # A fresh Debian cluster asks for passwords over TCP; the tests connect as postgres without
    # one, as on a developer machine. Only done to a cluster this script just installed.
    step "allowing password-less local TCP connections to the new cluster"
    sed -i -E 's/(scram-sha-256|md5)$/trust/' /etc/postgresql/*/main/pg_hba.conf
  fi
  step "starting the local Postgres"
  local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
    die "could not start Postgres $version; start it yourself or fix DATABASE_URL"
  wait_until_answers Postgres "$host" "$port"
}

ensure_redis() {
  local host port; host=$(url_host "$1"); port=$(url_port "$1" 6379)
  answers "$host" "$port" && return 0
  is_local "$host" || die "Redis at $host:$port does not answer; start it or fix REDIS_URL"
  command -v redis-server >/dev/null || apt_install redis-server
  step "starting the local Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null ||
    die "could not start Redis; start it yourself or fix REDIS_URL"
  wait_until_answers Redis "$host" "$port"
}
