#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what it needs when
# missing (OpenSSH server for the SSH test hosts, a virtualenv with the package and its
# test extras), then runs pytest against real PostgreSQL, real sshd and a real S3 endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v zstd >/dev/null || need_apt+=(zstd)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing ${need_apt[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# Every part of the bed is installed above, so a skip here means something is broken:
# VETAI_OPS_REQUIRE_BED=1 turns skips into failures (tests/bed.py). Export it as 0 to
# let a machine without some part skip those tests instead.
export VETAI_OPS_REQUIRE_BED="${VETAI_OPS_REQUIRE_BED:-1}"

# One pytest-xdist worker per core (at most 4: each worker starts its own PostgreSQL
# clusters, sshd hosts and S3 endpoint). worksteal rebalances the long end-to-end files.
# Override with VETAI_OPS_TEST_WORKERS=0 (serial) or pass -n yourself (the last -n wins).
workers="${VETAI_OPS_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
[ "$workers" -gt 4 ] && workers=4
xdist=(-n "$workers" --dist worksteal)
[ "$workers" -eq 0 ] && xdist=(-n 0)

# Dead code fails the run before the tests ([tool.vulture] in pyproject.toml: paths, confidence,
# and the few names a framework calls by name).
.venv/bin/python -m vulture

set +e
.venv/bin/python -m pytest "${xdist[@]}" --durations=25 "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc
