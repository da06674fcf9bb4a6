# A Docker engine and the Dockerfile's base images, for scripts that build and run the images.
# Source after services.sh, don't run.
#
# Uses an engine that answers. Else (as root on Debian) installs docker.io and starts dockerd
# with host networking only (no bridge, no iptables: it needs neither systemd nor a kernel's
# netfilter), with its own socket, pid file and exec root under a temporary folder;
# stop_engine stops it again. Images and the build cache stay in dockerd's data root
# (/var/lib/docker), so the next run on this machine reuses them.
#
# Base images are pulled when a registry answers. Where none does, local stand-ins are built and
# tagged with the names the Dockerfile uses: debian:bookworm-slim from a debootstrap minbase
# root filesystem, and the Rust builder from it plus gcc, libc6-dev, CA certificates and this
# machine's own Rust toolchain.

ENGINE_PID=
ENGINE_DIR=

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

ensure_engine() {
  docker_answers && return 0
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers; start one (or run as root to start one here)"
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || apt_install docker.io
  ENGINE_DIR=$(mktemp -d /tmp/dockerd.XXXXXX)
  step "starting a Docker engine with host networking only (socket $ENGINE_DIR/docker.sock)"
  dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --exec-root "$ENGINE_DIR/exec" --pidfile "$ENGINE_DIR/docker.pid" \
    -H "unix://$ENGINE_DIR/docker.sock" >"$ENGINE_DIR/dockerd.log" 2>&1 &
  ENGINE_PID=$!
  export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
  for _ in $(seq 1 60); do
    docker_answers && return 0
    kill -0 "$ENGINE_PID" 2>/dev/null || { tail -n 20 "$ENGINE_DIR/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.5
  done
  die "dockerd did not answer within 30 s (log: $ENGINE_DIR/dockerd.log)"
}

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
  unset DOCKER_HOST
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
