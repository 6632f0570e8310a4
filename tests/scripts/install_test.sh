#!/usr/bin/env bash
# `cmake --install BUILD --prefix TMP` installs the four binaries, each of which runs and
# prints its version, and the documented configs and example jobs.
set -euo pipefail
build=$1
prefix=$(mktemp -d /tmp/custody-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for b in custody custody-coordinator custody-ps custody-worker; do
  [ -x "$prefix/bin/$b" ] || { echo "install: $prefix/bin/$b missing"; exit 1; }
  "$prefix/bin/$b" --version | grep -q '^custody [0-9]' || { echo "install: $b --version failed"; exit 1; }
done
for f in coordinator.toml ps.toml worker.toml cli.toml jobs/fashion_mlp.toml; do
  [ -f "$prefix/share/custody/configs/$f" ] || { echo "install: configs/$f missing"; exit 1; }
done
echo "install: ok ($prefix)"
