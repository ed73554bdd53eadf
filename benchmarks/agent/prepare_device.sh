#!/usr/bin/env bash
# Wheels the agent needs on the GPU machine that its image lacks (device README, Notes):
# python3 3.12 there has torch 2.11, triton 3.6, nvidia-ml-py, cuda-bindings, numpy,
# pyyaml, prometheus-client and psutil, but not pydantic. `maxtune agent --profile-file`
# imports no kubernetes client, so none is carried. Run here, in the repository root:
#
#     bash benchmarks/agent/prepare_device.sh
#
# The wheels land in the git-ignored .whl/ (one version of each; the versions are this
# repository's pins in constraints.txt), about 3 MB.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
pin() { grep -i -E "^$1==" constraints.txt | head -1; }
wanted=()
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
    line=$(pin "$name" || true)
    if [[ -z "$line" ]]; then
        line=$(pin "${name//-/_}" || true)
    fi
    if [[ -z "$line" ]]; then
        echo "prepare_device: no pin for $name in constraints.txt" >&2
        exit 1
    fi
    wanted+=("$line")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "${wanted[@]}"
ls -1 .whl
du -sh .whl
