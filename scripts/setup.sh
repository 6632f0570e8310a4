#!/usr/bin/env bash
# Installs the Debian 12 packages Custody builds and runs with, if any is missing.
# Safe to run again: it installs nothing when everything is there.
#   scripts/setup.sh            what builds, runs and tests Custody
#   scripts/setup.sh --bench    also PyTorch and OpenBLAS, the peers bench/compare.sh measures
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libeigen3-dev libzmq3-dev cppzmq-dev capnproto libcapnp-dev
  librocksdb-dev rocksdb-tools libgtest-dev googletest libbenchmark-dev
  zlib1g-dev libssl-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  dataset-fashion-mnist python3-zmq clang-14 libclang-rt-14-dev
  python3-jsonschema python3-rfc3987 iproute2
  libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx python3-numpy graphviz
  libcpp-httplib-dev python3-requests python3-flask prometheus curl
)
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-torch python3-numpy libopenblas0-openmp)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
