# A Docker engine, the Dockerfile's base images and compose.yaml's service images, for scripts
# that build and run the images. Source after services.sh, don't run.
#
# Uses an engine that answers. Else (as root on Debian) installs docker.io and starts dockerd
# without iptables (it needs neither systemd nor the host's firewall rules: nothing is NATed to
# the outside, which the containers here do not need), with its own socket, pid file and exec
# root under a temporary folder; stop_engine stops it again. Its bridge networking works
# (containers reach each other by service name, published ports answer on the host through
# docker-proxy); where a kernel cannot give it a bridge it falls back to host networking only.
# Images and the build cache stay in dockerd's data root (/var/lib/docker), so the next run on
# this machine reuses them. One such engine at a time: a second script waits for the first.
#
# Base images are pulled when a registry answers. Where none does, local stand-ins are built and
# tagged with the names the Dockerfile uses: debian:bookworm-slim from a debootstrap minbase
# root filesystem, and the Rust builder from it plus gcc, libc6-dev, CA certificates and this
# machine's own Rust toolchain. compose.yaml's postgres:16 and redis:7 likewise
# (ensure_service_images): stand-ins from Debian's packages, scripts/lib/standins/.

ENGINE_PID=
ENGINE_DIR=

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

ENGINE_BRIDGE=1
ENGINE_MADE_DOCKER0=

ensure_engine() {
  docker_answers && return 0
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers; start one (or run as root to start one here)"
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || apt_install docker.io
  # dockerd's data root is shared by every run on this machine: one engine on it at a time.
  exec {ENGINE_LOCK}>/var/lock/booking-dockerd.lock
  if ! flock -n "$ENGINE_LOCK"; then
    step "another script's Docker engine runs on /var/lib/docker; waiting for it to stop"
    flock -w 1800 "$ENGINE_LOCK" || die "the other Docker engine did not stop within 30 minutes"
  fi
  ENGINE_DIR=$(mktemp -d /tmp/dockerd.XXXXXX)
  export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
  ip link show docker0 >/dev/null 2>&1 || ENGINE_MADE_DOCKER0=1
  step "starting a Docker engine without iptables (socket $ENGINE_DIR/docker.sock)"
  start_dockerd && return 0
  step "dockerd could not start with a bridge; starting it with host networking only"
  ENGINE_BRIDGE=0
  start_dockerd --bridge=none || die "dockerd did not start (log: $ENGINE_DIR/dockerd.log)"
}

# start_dockerd [OPTION...]: starts dockerd in the background, true once it answers.
start_dockerd() {
  # The lock's descriptor stays here: dockerd and its children must not hold it.
  dockerd "$@" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --exec-root "$ENGINE_DIR/exec" --pidfile "$ENGINE_DIR/docker.pid" \
    -H "$DOCKER_HOST" >>"$ENGINE_DIR/dockerd.log" 2>&1 {ENGINE_LOCK}>&- &
  ENGINE_PID=$!
  for _ in $(seq 1 60); do
    docker_answers && return 0
    if ! kill -0 "$ENGINE_PID" 2>/dev/null; then
      wait "$ENGINE_PID" 2>/dev/null || true
      tail -n 5 "$ENGINE_DIR/dockerd.log" >&2
      ENGINE_PID=
      return 1
    fi
    sleep 0.5
  done
  die "dockerd did not answer within 30 s (log: $ENGINE_DIR/dockerd.log)"
}

# Whether the engine can run compose.yaml as it is: containers on a bridge network.
engine_has_bridge() { [[ $ENGINE_BRIDGE == 1 ]] && docker network inspect bridge >/dev/null 2>&1; }

# Stops the engine ensure_engine started (none otherwise), and the containerd it runs.
stop_engine() {
  [[ -n $ENGINE_PID ]] || return 0
  step "stopping the Docker engine this script started"
  kill -TERM "$ENGINE_PID" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$ENGINE_PID" 2>/dev/null || true
  wait "$ENGINE_PID" 2>/dev/null || true
  pkill -f "containerd.*$ENGINE_DIR" 2>/dev/null || true
  ENGINE_PID=
  # dockerd bind-mounts its network namespace file; unmount it, or rm cannot remove it.
  find "$ENGINE_DIR" -path '*/netns/*' -exec umount {} \; 2>/dev/null || true
  rm -rf "$ENGINE_DIR" 2>/dev/null || true
  # The default bridge outlives dockerd; remove it if this engine made it.
  [[ -z $ENGINE_MADE_DOCKER0 ]] || ip link delete docker0 2>/dev/null || true
  unset DOCKER_HOST
  exec {ENGINE_LOCK}>&-
}

# COMPOSE: the compose command, the plugin (`docker compose`) where the client has it, else
# Debian's docker-compose (1.29, which talks to any engine of this age).
compose_command() {
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
  else ensure_docker_compose; COMPOSE=(docker-compose); fi
}

# wait_healthy CONTAINER [NAME]: until Docker reports the container healthy (its image's or
# compose's healthcheck); dies if it stops running or is not healthy within 60 s.
wait_healthy() {
  local container=$1 name=${2:-$1} health
  [[ -n $container ]] || die "$name has no container"
  for _ in $(seq 1 120); do
    health=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$container")
    [[ $health == "running healthy" ]] && { echo "$name: healthy" >&2; return 0; }
    [[ $health == running* ]] || { docker logs --tail 20 "$container" >&2; die "$name is $health"; }
    sleep 0.5
  done
  docker logs --tail 20 "$container" >&2
  die "$name not healthy within 60 s ($health)"
}

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

# docker build with BuildKit (the Dockerfile's cache mounts need it): the default client when
# it has buildx; else Debian's docker.io client (20.10), whose builder has BuildKit built in.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    docker build "$@"
  else
    [[ -x /usr/bin/docker ]] || apt_install docker.io
    DOCKER_BUILDKIT=1 /usr/bin/docker build "$@"
  fi
}

# Pulls IMAGE if a registry answers within a minute.
try_pull() { timeout 60 docker pull -q "$1" >/dev/null 2>&1; }

ensure_base_images() {
  has_image debian:bookworm-slim || try_pull debian:bookworm-slim || build_debian_standin
  has_image rust:1-slim-bookworm || try_pull rust:1-slim-bookworm || build_rust_standin
}

build_debian_standin() {
  step "no registry answers: building a stand-in debian:bookworm-slim with debootstrap"
  command -v debootstrap >/dev/null || apt_install debootstrap
  local root; root=$(mktemp -d /tmp/bookworm.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
  # As the real slim image: no apt lists, no docs to speak of.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$root" "$root.log"
}

build_rust_standin() {
  step "no registry answers: building a stand-in rust:1-slim-bookworm from this machine's toolchain"
  local sysroot context
  sysroot=$(rustc --print sysroot)
  context=$(mktemp -d /tmp/rust-standin.XXXXXX)
  mkdir -p "$context/rust"
  # The compiler and its libraries; the docs (share/) are not needed to build.
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$context/rust/" 2>/dev/null ||
    cp -a "$sysroot/bin" "$sysroot/lib" "$context/rust/"
  cp /etc/ssl/certs/ca-certificates.crt "$context/"
  cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY rust /usr/local/rust
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
DOCKERFILE
  docker_build --network host -q -t rust:1-slim-bookworm "$context" >/dev/null ||
    die "building the Rust stand-in failed"
  rm -rf "$context"
}

# compose.yaml's postgres:16 and redis:7: found, else pulled, else stand-ins built from Debian's
# packages (scripts/lib/standins/; Debian bookworm's PostgreSQL is 15, and the stand-in says so).
# A stand-in is labelled with a hash of its files and rebuilt only when they change.
ensure_service_images() {
  ensure_service_image postgres:16 scripts/lib/standins/postgres
  ensure_service_image redis:7 scripts/lib/standins/redis
}

ensure_service_image() {
  local image=$1 dir=$2 hash label old=
  hash=$(cat "$dir"/* | sha256sum | cut -c1-16)
  if has_image "$image"; then
    label=$(docker image inspect -f '{{index .Config.Labels "booking.standin"}}' "$image")
    # A real image (no label), or a stand-in of these very files.
    [[ $label == "$hash" || -z $label || $label == "<no value>" ]] && return 0
    step "the stand-in $image is out of date; rebuilding it"
    old=$(docker image inspect -f '{{.Id}}' "$image")
  elif try_pull "$image"; then
    return 0
  else
    step "no registry answers: building a stand-in $image from Debian's packages ($dir)"
  fi
  local context; context=$(mktemp -d /tmp/standin.XXXXXX)
  cp -a "$dir"/. "$context/"
  # This machine's Debian mirror and its apt settings for it, so the build's apt-get reaches
  # what this machine's does.
  mkdir -p "$context/apt/sources.list.d" "$context/apt/apt.conf.d"
  [[ ! -e /etc/apt/sources.list.d/debian.sources ]] ||
    cp /etc/apt/sources.list.d/debian.sources "$context/apt/sources.list.d/"
  apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
    >"$context/apt/apt.conf.d/90host" || true
  docker_build --network host -t "$image" --label "booking.standin=$hash" "$context" \
    >"$context.log" 2>&1 || { tail -n 30 "$context.log" >&2; die "building the stand-in $image failed"; }
  rm -rf "$context" "$context.log"
  # The previous stand-in, now untagged (kept if a container still uses it).
  [[ -z $old ]] || docker image rm "$old" >/dev/null 2>&1 || true
}
