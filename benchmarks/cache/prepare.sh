#!/usr/bin/env bash
# What the GPU machine lacks and cannot fetch (it has no network): the redis Python package (a
# wheel for its Python 3.12) and Debian's redis-server with the libraries it links that an
# image may lack. Run here, in the repository root; everything lands in the git-ignored .whl/
# (wheels in .whl/, .debs in .whl/debs/), which the device run carries.
#
#   bash benchmarks/cache/prepare.sh
#   then on the GPU machine (carry: [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:core:agent:dev:. python3 benchmarks/cache/gpu_cache_run.py \
#        --debs .whl/debs --out $OUT
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# The redis-py the tests use (constraints.txt): pure Python, one wheel for every platform.
version=$(sed -n 's/^redis==//p' constraints.txt)
mkdir -p .whl/debs
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_17_x86_64 -d .whl "redis==${version}"
# redis-server is a symlink into redis-tools; jemalloc and lzf are what Debian links it to and
# most images lack; the rest is carried in case the image lacks it too (they are found through
# LD_LIBRARY_PATH by the unpacked server only).
packages=(redis-server redis-tools libjemalloc2 liblzf1 libatomic1 libssl3 libsystemd0
  libcap2 libgcrypt20 libgpg-error0 liblz4-1 liblzma5 libzstd1)
(cd .whl/debs && rm -f ./*.deb && apt-get download "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
count=$(ls .whl/debs/*.deb | wc -l)
if [ "$count" -ne "${#packages[@]}" ]; then
  echo "prepare.sh: expected ${#packages[@]} .debs, got $count in .whl/debs" >&2
  exit 1
fi
ls -la .whl .whl/debs
du -sh .whl
