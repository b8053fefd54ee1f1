#!/usr/bin/env bash
# Installs every system package the lab needs on Debian 12 / Ubuntu 22.04+.
# Idempotent: re-running it only re-checks what is already there.
#
#   sudo hardware-setup/install.sh          # station + analysis + web + test tools
#
# Nothing here fetches from outside Debian's archive: models and runtimes come
# from PyPI through `lab-setup models`, crates from crates.io at build time.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo -E "$0" "$@"; fi
  echo "install.sh: must run as root (or with sudo available)" >&2
  exit 1
fi

packages=(
  # build: GStreamer and FFmpeg headers, bindgen's libclang, whisper.cpp's cmake
  pkg-config cmake libclang-dev
  # whisper.cpp's BLAS backend (f32 sgemm for the encoder: ~25 % faster)
  libopenblas-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libavcodec-dev libavformat-dev libavutil-dev libswresample-dev libswscale-dev
  # capture: sources, encoders, muxers (x264enc in -ugly, h264parse in -bad)
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x
  gstreamer1.0-pulseaudio gstreamer1.0-alsa gstreamer1.0-tools
  # station tools: headless screen, audio server, synthetic speech, checks
  xvfb x11-utils pulseaudio pulseaudio-utils espeak-ng sox ffmpeg
  # browser for the probe, the demo and the UI tests
  chromium chromium-driver
  # review server's second database and Python for model wheels
  postgresql python3 python3-venv python3-pip
  # misc
  ca-certificates procps psmisc curl
  # scripts/bench-record: CPU and peak-RSS measurement (/usr/bin/time)
  time
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install.sh: all ${#packages[@]} system packages already installed"
else
  echo "install.sh: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install.sh: done"
fi

# Node.js (>= 20 preferred) runs the browser tests and the demo's scripted
# participants with playwright-core from the npm registry. Use the machine's
# own Node when it has one; otherwise Debian's (18, which playwright-core
# accepts with an engines warning).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: installing Node.js and npm from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
