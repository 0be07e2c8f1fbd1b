#!/usr/bin/env bash
# Installs everything the workstation and its tests need on a fresh Debian/Ubuntu machine:
# the system packages (Qt's xcb libraries, Xvfb, the Orthanc PACS and DCMTK used as real test
# peers, dicom3tools (dciodvfy) to check what we write, GDCM's tools for benchmarks) and a
# virtual environment in .venv with the package.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  orthanc dcmtk dicom3tools libgdcm-tools xvfb xauth imagemagick
  libxcb-icccm4 libxcb-cursor0 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1
  libxkbcommon-x11-0 libxkbcommon0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libxcb-xfixes0
  libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglx-mesa0 libfontconfig1 libdbus-1-3 libxrender1 fonts-dejavu-core
  python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
