# Shared by scripts/demo and scripts/test: install what is missing, then
# configure and build incrementally. Source it; do not run it.

LQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LQ_BUILD=${LQ_BUILD:-$LQ_ROOT/build}

# Debian 12 packages lq builds and tests with.
LQ_PACKAGES=(
  build-essential cmake ninja-build ccache python3
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev  # lq-bench and lq-train: the fp32 SGEMM baseline
  zlib1g-dev dataset-fashion-mnist  # lq-train: gzipped IDX training data
  python3-matplotlib  # lq-train: lq-plot draws the curves
  fortunes  # examples/char_transformer.py: the text it trains on
  python3-dev pybind11-dev python3-numpy python3-torch python3-pytest  # python/
  libtorch-dev  # python/: lq.torch.Linear as a C++ autograd function
  python3-venv python3-wheel  # scripts/test-venv: pip install into a venv
  libzstd-dev      # LLVMSupport links it in a -DLQ_STATIC_LLVM=ON build
)

lq_log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

lq_missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      echo "$pkg"
  done
}

# Installs the packages that are not installed yet; refreshes the package
# lists only when something has to be installed.
lq_install_packages() {
  local missing
  missing=$(lq_missing_packages "$@")
  [ -z "$missing" ] && return 0
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  lq_log "installing: $(echo $missing)"
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends $missing
}

lq_build() {
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  if [ ! -f "$LQ_BUILD/build.ninja" ]; then
    lq_log "configuring $LQ_BUILD"
    cmake -G Ninja -S "$LQ_ROOT" -B "$LQ_BUILD" -DCMAKE_BUILD_TYPE=Release
  fi
  lq_log "building"
  cmake --build "$LQ_BUILD" -j "$jobs"
}
