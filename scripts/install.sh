#!/usr/bin/env bash
# Set up a fresh machine for napari-attnseg development:
#   * Debian packages napari needs to open a real window under Xvfb;
#   * a virtual environment in .venv with PyTorch (the build chosen below) and the
#     package (editable) with its test extras.
# Safe to run again; it only adds what is missing.
#
# Which PyTorch build (torch==$TORCH_VERSION, default 2.13.0), decided in this order:
#   1. TORCH_INDEX_URL is set: from that index (e.g. .../whl/cu126 for a CUDA 12.6 build);
#   2. pip is already configured with package sources (index-url, extra-index-url or
#      find-links in `pip config list`, e.g. a local registry mirror): from those, as
#      configured; which build that gives depends on what they hold;
#   3. an NVIDIA GPU answers `nvidia-smi -L`: the default index (PyPI), whose Linux
#      wheel is the CUDA build (it pulls a few GB of nvidia-* packages);
#   4. otherwise: the CPU-only build from https://download.pytorch.org/whl/cpu.
# The script says which it chose and, at the end, which build was installed.
#
# Usage: scripts/install.sh [--dry-run]
#   --dry-run  only print the PyTorch choice and the pip command; install nothing.
# Environment: PYTHON (interpreter for the venv, default python3), TORCH_VERSION,
#   TORCH_INDEX_URL, NVIDIA_SMI (command used to look for an NVIDIA GPU, default nvidia-smi).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}

# pip's configured package sources (config files and PIP_* variables), one per line
pip_sources() {
  local py=$1
  "$py" -m pip config list 2>/dev/null \
    | grep -E '^[^=]*\.(index-url|extra-index-url|find-links)=' | grep -Ev "=''$" || true
}

# "GPU 0: ..." lines when an NVIDIA driver and GPU answer; nothing otherwise
nvidia_gpus() {
  command -v "$NVIDIA_SMI" >/dev/null 2>&1 || return 0
  "$NVIDIA_SMI" -L 2>/dev/null | grep -E '^GPU [0-9]+' || true
}

# Sets TORCH_ARGS (pip arguments) and prints the choice and why.
choose_torch() {
  local py=$1 sources gpus
  TORCH_ARGS=("torch==$TORCH_VERSION")
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    TORCH_ARGS+=(--index-url "$TORCH_INDEX_URL")
    echo "torch: from TORCH_INDEX_URL=$TORCH_INDEX_URL (set by you)"
    return
  fi
  sources=$(pip_sources "$py")
  if [ -n "$sources" ]; then
    echo "torch: from the package sources pip is configured with (a mirror or local"
    echo "  registry; the build is whatever they hold; set TORCH_INDEX_URL to choose):"
    printf '%s\n' "$sources" | sed 's/^/    /'
    return
  fi
  gpus=$(nvidia_gpus)
  if [ -n "$gpus" ]; then
    echo "torch: CUDA build from the default index (PyPI), for the NVIDIA GPU(s) found:"
    printf '%s\n' "$gpus" | sed 's/^/    /'
    return
  fi
  TORCH_ARGS+=(--index-url "$CPU_INDEX_URL")
  if command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
    echo "torch: CPU-only build from $CPU_INDEX_URL ($NVIDIA_SMI found no NVIDIA GPU)"
  else
    echo "torch: CPU-only build from $CPU_INDEX_URL (no NVIDIA GPU: $NVIDIA_SMI not found)"
  fi
}

if [ "$DRY_RUN" = 1 ]; then
  py=$PYTHON
  [ -x .venv/bin/python ] && py=.venv/bin/python
  choose_torch "$py"
  echo "would run: .venv/bin/python -m pip install ${TORCH_ARGS[*]}"
  exit 0
fi

APT_PACKAGES=(
  xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0
)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first, so the package's `torch>=2.1` is already met by the build chosen here
choose_torch .venv/bin/python
.venv/bin/python -m pip install -q "${TORCH_ARGS[@]}"
.venv/bin/python -m pip install -q -e ".[testing]"
.venv/bin/python - <<'EOF'
import torch

cuda = torch.version.cuda
build = f"CUDA {cuda}" if cuda else "CPU only"
usable = "a CUDA GPU is usable" if torch.cuda.is_available() else "no CUDA GPU in use"
print(f"installed torch {torch.__version__} ({build}; {usable})")
EOF
echo "napari-attnseg installed in .venv"
