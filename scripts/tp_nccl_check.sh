#!/usr/bin/env bash
# Tensor parallelism on this machine's GPUs with NCCL (docs/tensor_parallel.md).
#
#   scripts/tp_nccl_check.sh                 # world size 1 on one GPU (issue 5's NCCL check)
#   scripts/tp_nccl_check.sh 2               # tp=2 on 2 GPUs (issue 6)
#   scripts/tp_nccl_check.sh 4 --shape 8b --layers 4 --out tp4_8b.json
#
# Runs `python -m nvfp4.parallel.selfcheck` under torchrun: NCCL collectives, every parallel
# layer against the one-GPU layer (W4A4 and W4A16, auto backend = triton on sm80+), and a
# random Llama-shaped model loaded with tp=N against nvfp4.load on one GPU. Rank 0 prints a
# JSON summary; the exit status is 0 only if every check passed on every rank.
set -euo pipefail
NPROC="${1:-1}"
shift $(( $# > 0 ? 1 : 0 ))
PYTHON="${PYTHON:-python}"
# NVLink SHARP/multicast can take a host's GPUs out of service: keep it off.
export NCCL_NVLS_ENABLE=0
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
export NVFP4_TP_TIMEOUT_S="${NVFP4_TP_TIMEOUT_S:-600}"
GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$GPUS" -lt "$NPROC" ]; then
  echo "tp_nccl_check: $NPROC ranks need $NPROC GPUs, $GPUS visible" >&2
  exit 2
fi
exec "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
  -m nvfp4.parallel.selfcheck --device cuda "$@"
