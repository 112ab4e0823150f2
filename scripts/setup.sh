#!/usr/bin/env bash
# Installs amos-prep's Debian 12 dependencies (build, test, runtime) and builds into build/.
# Idempotent: packages already present are skipped by apt, the build is incremental.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  g++ cmake make pkg-config
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev libinsighttoolkit5-dev
  libeigen3-dev nlohmann-json3-dev libgtest-dev zlib1g-dev libdeflate-dev
  python3 python3-numpy python3-h5py python3-nibabel hdf5-tools
  slurm-wlm munge
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
cmake --build "$here/build" -j "$jobs"
echo "setup: built $here/build/amos-prep"
