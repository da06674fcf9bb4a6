# Python packages from PyPI in virtualenvs cached under target/, for scripts and tests.
# Source after services.sh, don't run.

# ensure_venv VENV PACKAGE==VERSION...: a virtualenv at VENV holding these pinned packages,
# made with Debian's python3 (and python3-venv, installed with apt-get when missing), the
# packages installed from PyPI. Once: a VENV that already holds them (its .packages file says
# so) is reused.
ensure_venv() {
  local venv=$1 python
  shift
  [[ -x $venv/bin/python && $(cat "$venv/.packages" 2>/dev/null) == "$*" ]] && return 0
  command -v /usr/bin/python3 python3 >/dev/null || apt_install python3
  python=$(command -v /usr/bin/python3 python3 | head -n 1)
  step "installing $* from PyPI into the virtualenv $venv"
  rm -rf "$venv"
  # Debian's python3 makes virtualenvs only with python3-venv installed.
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    "$python" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  printf '%s\n' "$*" >"$venv/.packages"
}

# The Standard Webhooks reference package, the independent verifier of the sold-out webhook's
# signatures (scripts/webhook-receiver, and the worker's webhook tests).
STANDARDWEBHOOKS_VERSION=1.1.0
WEBHOOK_VENV=target/webhook-venv

ensure_webhook_venv() { ensure_venv "$PWD/$WEBHOOK_VENV" "standardwebhooks==$STANDARDWEBHOOKS_VERSION"; }
