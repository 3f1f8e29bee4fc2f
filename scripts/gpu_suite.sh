#!/usr/bin/env bash
# The project's GPU check in one device call: environment, every GPU-marked test, and the
# NCCL world-size-1 tensor-parallel selfcheck. Logs go to $OUT (device tool) or ./gpu_out.
# pytest gets SIGINT at its time limit, so a cut run still prints its summary (counts, durations).
#   scripts/gpu_suite.sh            # all steps
#   STEPS="tests" scripts/gpu_suite.sh
#   STEPS=tests TEST_FILES="tests/gpu/test_triton_gpu.py" scripts/gpu_suite.sh   (a part: the whole
#       suite, 218 tests, takes longer than one 10-minute device call; on an H100 the integer-dot,
#       decode-v2 and first half2 tests, 94 in all, took ~6 minutes)
set -u -o pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
STEPS=${STEPS:-"env tests tp"}
status=0
for step in $STEPS; do
  case $step in
    env)   python3 -m nvfp4 env 2>&1 | tee "$OUT/env.txt" ;;
    tests) timeout -s INT -k 30 ${TEST_TIMEOUT:-420} python3 -m pytest -q -p no:cacheprovider -m gpu -rs --durations=25 \
             ${TEST_FILES:-tests/gpu tests/test_hf_gpu.py tests/test_tp_gpu.py tests/test_demo.py} ${PYTEST_ARGS:-} \
             2>&1 | tee "$OUT/gpu_tests.log" | tail -30 || status=1 ;;
    tp)    timeout ${TP_TIMEOUT:-240} scripts/tp_nccl_check.sh 1 --out "$OUT/tp_nccl_ws1.json" \
             2>&1 | tee "$OUT/tp_nccl_ws1.log" | tail -15 || status=1 ;;
  esac
done
exit $status
