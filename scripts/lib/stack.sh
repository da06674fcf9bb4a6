# Runs the deployment of compose.yaml without Docker: payment-svc and ranking-worker as two
# local processes with exactly the environment compose.yaml gives their containers (hostnames
# of compose services point at 127.0.0.1). Source after services.sh, don't run.

# Debian's docker-compose reads and validates compose.yaml without a Docker engine.
ensure_docker_compose() {
  command -v docker-compose >/dev/null && return 0
  apt_install docker-compose
}

# 64 random hex digits (32 bytes), for a JWT_SECRET.
random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Whether JWT_SECRET is set in the environment or in .env, where compose reads it.
has_jwt_secret() { [[ -n ${JWT_SECRET:-} ]] || grep -qs '^JWT_SECRET=.' .env; }

# compose.yaml requires JWT_SECRET and has no fallback. A local run (the demo, the end-to-end
# test) that finds none gets a random one for this run, exported so every service and the demo
# client share it. Call it in the script's own shell, not in $(...).
ensure_jwt_secret() {
  has_jwt_secret && return 0
  JWT_SECRET=$(random_secret)
  export JWT_SECRET
}

validate_compose_file() {
  ensure_docker_compose
  ensure_jwt_secret
  step "validating compose.yaml (docker-compose config -q)"
  docker-compose -f compose.yaml config -q
}

# compose_env SERVICE: that service's environment, one KEY=VALUE per line.
compose_env() {
  # Debian's python3, which has the yaml module docker-compose itself uses.
  docker-compose -f compose.yaml config | /usr/bin/python3 scripts/lib/compose_env.py "$1"
}

# compose_var SERVICE KEY: one value of that service's environment.
compose_var() { compose_env "$1" | sed -n "s/^$2=//p"; }

# Runs a command with nothing in its environment but PATH and SERVICE's compose environment.
run_as_service() {
  local service=$1; shift
  local -a environment
  mapfile -t environment < <(compose_env "$service")
  env -i PATH="$PATH" "${environment[@]}" "$@"
}

# The same, replacing the calling (sub)shell: `exec_as_service ... &` makes $! the service's own
# pid, so a SIGTERM reaches the service itself.
exec_as_service() {
  local service=$1; shift
  local -a environment
  mapfile -t environment < <(compose_env "$service")
  exec env -i PATH="$PATH" "${environment[@]}" "$@"
}

# The compose database's role and database on the local Postgres (what the postgres image's
# POSTGRES_USER/POSTGRES_DB create in a container). ADMIN_URL: a superuser's URL.
ensure_compose_database() {
  local admin_url=$1 url user password database
  url=$(compose_var migrate DATABASE_URL)
  user=$(sed -E 's|^[a-z]+://([^:@]+).*|\1|' <<<"$url")
  password=$(sed -E 's|^[a-z]+://[^:@]+:([^@]*)@.*|\1|' <<<"$url")
  database=${url##*/}
  psql -q "$admin_url" -v ON_ERROR_STOP=1 <<SQL >/dev/null
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$user', '$password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$database', '$user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$database') \gexec
SQL
  local owner
  owner=$(psql -Atq "$admin_url" -c \
    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$database'")
  [[ $owner == "$user" ]] || die "the local database $database belongs to $owner, not $user as" \
    "compose.yaml expects; drop it or change its owner (ALTER DATABASE $database OWNER TO $user)"
}

wait_until_ready() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { tail -n 5 "$log" >&2; die "$name exited during startup"; }
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$name did not become ready at $url within 30 s"
}

# prepare_local_services ADMIN_URL: the local Postgres and Redis compose.yaml's services stand
# for, answering, with the compose database in place.
prepare_local_services() {
  ensure_postgres "$1"
  ensure_redis "$(compose_var ranking-worker REDIS_URL)"
  ensure_compose_database "$1"
}

# start_stack BIN_DIR LOG_DIR: migrate, then start both services in the background and wait
# until both are ready. Sets PAYMENT_PID and WORKER_PID; stop_stack stops them.
start_stack() {
  local bin=$1 logs=$2
  mkdir -p "$logs"
  command -v curl >/dev/null || apt_install curl
  step "migrating (the compose service migrate)"
  run_as_service migrate "$bin/payment-svc" migrate >"$logs/migrate.log" 2>&1 ||
    { cat "$logs/migrate.log" >&2; die "payment-svc migrate failed"; }
  step "starting payment-svc and ranking-worker with compose.yaml's environment (logs in $logs)"
  exec_as_service payment-svc "$bin/payment-svc" serve >"$logs/payment-svc.log" 2>&1 &
  PAYMENT_PID=$!
  exec_as_service ranking-worker "$bin/ranking-worker" run >"$logs/ranking-worker.log" 2>&1 &
  WORKER_PID=$!
  trap stop_stack EXIT
  wait_until_ready payment-svc http://127.0.0.1:8080/readyz "$PAYMENT_PID" "$logs/payment-svc.log"
  wait_until_ready ranking-worker http://127.0.0.1:8081/readyz "$WORKER_PID" "$logs/ranking-worker.log"
}

# Stops both services with SIGTERM, as docker stops containers; fails unless both exit 0.
stop_stack() {
  trap - EXIT
  local failed=0 name pid
  for name in payment-svc ranking-worker; do
    [[ $name == payment-svc ]] && pid=${PAYMENT_PID:-} || pid=${WORKER_PID:-}
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    if ! wait "$pid"; then
      printf 'error: %s did not exit 0 after SIGTERM\n' "$name" >&2
      failed=1
    fi
  done
  PAYMENT_PID= WORKER_PID=
  return "$failed"
}
