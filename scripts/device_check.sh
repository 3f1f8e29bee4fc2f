#!/usr/bin/env bash
# One device call: GPU tests, optional small-M tuning sweep, benchmark pieces.
#   STEPS="tests tune bench" SHAPES=8b MS=... scripts/device_check.sh
#   STEPS=decode2 scripts/device_check.sh   (decode GEMM v2: its GPU tests + benchmarks/bench_decode_v2.py)
#   STEPS="decode dp4atests tp1" scripts/device_check.sh
#   STEPS=pending scripts/device_check.sh   (the GPU checks and timings still owed, see below)
#       decode:    benchmarks/bench_decode_w4a4.py (M <= 4: every path checked against the exact
#                  result, then timed beside bf16; the integer-dot kernel's candidates at M = 1)
#       dp4atests: tests/gpu/test_dp4a_gpu.py and, of test_triton_gpu.py, activation quantization,
#                  every small-M GEMM candidate, the exactness tests, compile and CUDA graphs
#       profile:   benchmarks/profile_eager.py (host time of eager calls, cProfile by own time)
#       chunks:    benchmarks/bench_large_m_chunks.py (large-M cuBLAS path: the weight dequantized
#                  whole vs in N-chunks)
#       eagerdecode: benchmarks/bench_eager_decode.py (eager generate() of a Llama-8B-shaped model with
#                  EAGER_LAYERS decoder layers: bf16 vs NVFP4, eager graphs off / on)
#       tp1:       the NCCL tensor-parallel selfcheck at world size 1 (scripts/tp_nccl_check.sh)
#       half2tests: tests/gpu/test_gemv_half2_gpu.py, every small-M candidate, compile and CUDA graphs
#       actquant:  benchmarks/bench_act_quant.py (the activation kernel's rows x warps in its three outputs, < 1 min)
#       pdl:       the PDL GPU test (early and late signal), then bench_linear.py --pdl off,on,late at M <= 64
#       paired:    tests/gpu/test_paired_decode_gpu.py, then bench_linear.py --paired-ab (W4A4 with the
#                  paired decode on and off beside bf16, M = 1, 4, 16, 64, 128 unless MS is set)
# The next device session (plan of 2026-12-08, second session; its first call ran at the end of that
# session: raw/h100_bench_decode_splitk_eight_row_ab.*, raw/h100_gpu_tests_sm89_splitk_eight_row.log),
# one call each (each under 10 minutes). Rerun first: the fixed test_weight_dequant_kernel_exact and the
# exactness / CUDA-graph / compile tests with sm89 now the default:
#   STEPS=tests TEST_FILES="tests/gpu/test_triton_gpu.py" TEST_TIMEOUT=500 scripts/gpu_suite.sh
#   STEPS="newtests bench" MS=1,4,8,16,128 BENCH_TIMEOUT=330 scripts/device_check.sh   (first, in case only
#     one call can be had: the GPU tests of the 2026-12-08 second-session changes, ~3-4 min, then the
#     decode-sized table with their A/B rows; rows so far survive a cut in the CSV's .partial)
#   STEPS=tests TEST_FILES="tests/gpu/test_paired_decode_gpu.py tests/gpu/test_dp4a_gpu.py" TEST_TIMEOUT=500 scripts/gpu_suite.sh
#     (first: the sm_89 E4M3 scale conversion, every word x scale byte, every candidate of the paired GEMM
#      and of the integer-dot GEMV, both levels bit-identical; not yet run on a GPU)
#   STEPS=tests TEST_FILES="tests/gpu/test_triton_gpu.py" TEST_TIMEOUT=500 scripts/gpu_suite.sh
#     (the whole file: decoder levels bit-identical, weight dequantization of every scale byte, the GEMM's
#      in-kernel split-K reduction bit-identical to the launch, PDL "late", CUDA graphs, torch.compile, every path)
#   STEPS=bench scripts/device_check.sh  (the full table, W4A4/W4A16 beside NVFP4_TRITON_DECODE=sm89 at every M
#     and beside NVFP4_TRITON_SPLITK_REDUCE=kernel at M <= 128, the tuner's choices logged:
#     --decode-ab --splitk-ab --log-tuner; ~6-7 min; rows so far survive a timeout in the CSV's .partial)
#   STEPS=tests TEST_FILES="tests/gpu/test_gemv_half2_gpu.py tests/test_hf_gpu.py tests/test_tp_gpu.py tests/test_demo.py"
#     TEST_TIMEOUT=500 scripts/gpu_suite.sh; then STEPS=tp scripts/gpu_suite.sh
# (run on the H100 on 2026-12-08: the activation kernel's words sweep, its GPU tests, the PDL tests
#  and timing: raw/h100_act_quant_sweep_bf16_words.*, raw/h100_bench_pdl_on_late.*, raw/h100_gpu_tests_*.log)
# Writes logs and CSVs under $OUT (the device tool's output folder) or ./device_out.
set -u -o pipefail
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
STEPS=${STEPS:-"tests bench"}
# "pending": what the session of 2026-12-02 (stop 11) wrote without GPU time left: the GPU tests
# of the opt-in eager graphs and PDL (and the direct launches / chunked cuBLAS path), the eager
# profile with its "eager graphs" rows, and the eager generate() benchmark.
if [ "$STEPS" = "pending" ]; then
  STEPS="dp4atests profile eagerdecode"
  DP4A_TEST_K=${DP4A_TEST_K:-"eager_graphs or direct_launch or chunked_cublas or pdl"}
  DP4A_TEST_TIMEOUT=${DP4A_TEST_TIMEOUT:-200}
  PROFILE_ARGS=${PROFILE_ARGS:-"--ms 1,16"}
  PYTEST_EXTRA=${PYTEST_EXTRA:-"-rA"}
fi
SHAPES=${SHAPES:-all}
MS=${MS:-}
TAG=${TAG:-run}
python3 -c "import torch, triton; print(torch.cuda.get_device_name(), torch.__version__, triton.__version__)" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv >> "$OUT/env.txt" 2>&1
for step in $STEPS; do
  case $step in
    tests) timeout -s INT -k 30 ${TEST_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider tests/gpu -x 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 ;;
    tune)  timeout ${TUNE_TIMEOUT:-150} python3 benchmarks/tune_small_m.py ${TUNE_ARGS:-} 2>&1 | tee "$OUT/tune.log" | grep -E "BEST|FAILED" ;;
    bench) timeout ${BENCH_TIMEOUT:-560} python3 benchmarks/bench_linear.py run --shapes "$SHAPES" ${MS:+--ms "$MS"} ${BENCH_ARGS:---decode-ab --log-tuner} --out "$OUT/bench_$TAG.csv" 2>&1 | tee "$OUT/bench_$TAG.log" | tail -${BENCH_TAIL:-40} ;;
    newtests) timeout -s INT -k 30 ${NEW_TEST_TIMEOUT:-230} python3 -m pytest -q --tb=short -p no:cacheprovider -m gpu -rs \
                tests/gpu/test_paired_decode_gpu.py tests/gpu/test_dp4a_gpu.py tests/gpu/test_triton_gpu.py \
                -k "${NEW_TEST_K:-code_position or scale_byte or scale_conversion or weight_dequant or decoders_agree or splitk_reduced or (every_candidate_matches_exact and 4096-4096)}" \
                2>&1 | tee "$OUT/new_tests.log" | tail -25 ;;
    half2tests) timeout -s INT -k 30 ${HALF2_TEST_TIMEOUT:-240} python3 -m pytest -q --tb=short -p no:cacheprovider -m gpu tests/gpu/test_gemv_half2_gpu.py \
                 tests/gpu/test_triton_gpu.py -k "${HALF2_TEST_K:-half2 or small_m_candidate or torch_compile or cuda_graph}" \
                 2>&1 | tee "$OUT/half2_tests.log" | tail -25 ;;
    paired) timeout -s INT -k 30 ${PAIRED_TEST_TIMEOUT:-150} python3 -m pytest -q --tb=short -p no:cacheprovider -m gpu tests/gpu/test_paired_decode_gpu.py \
              2>&1 | tee "$OUT/paired_tests.log" | tail -15
            timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/bench_linear.py run --shapes "$SHAPES" --ms "${MS:-1,4,16,64,128}" --paired-ab \
              --no-ref --eager-shape '' --out "$OUT/bench_paired_$TAG.csv" 2>&1 | tee "$OUT/bench_paired_$TAG.log" | tail -${BENCH_TAIL:-40} ;;
    actquant) timeout ${ACTQ_TIMEOUT:-150} python3 benchmarks/bench_act_quant.py --out "$OUT/act_quant_$TAG.csv" 2>&1 \
             | tee "$OUT/act_quant_$TAG.log" | tail -${ACTQ_TAIL:-95} ;;
    pdl)   timeout -s INT -k 30 ${PDL_TEST_TIMEOUT:-150} python3 -m pytest -q --tb=short -p no:cacheprovider -m gpu \
             tests/gpu/test_triton_gpu.py -k pdl 2>&1 | tee "$OUT/pdl_tests.log" | tail -8
           timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/bench_linear.py run --shapes "$SHAPES" --ms "${MS:-1,2,4,8,16,32,64}" \
             --pdl off,on,late --no-ref --eager-shape '' --out "$OUT/bench_pdl_$TAG.csv" 2>&1 | tee "$OUT/bench_pdl_$TAG.log" | tail -${BENCH_TAIL:-40} ;;
    decode2) timeout ${DECODE2_TIMEOUT:-170} python3 benchmarks/bench_decode_v2.py --out "$OUT/decode_v2.csv" ${DECODE2_ARGS:-} 2>&1 | tee "$OUT/decode_v2.log" | tail -45
             timeout -s INT -k 30 ${DECODE2_TEST_TIMEOUT:-60} python3 -m pytest -q --tb=line -p no:cacheprovider tests/gpu/test_decode_v2_gpu.py 2>&1 | tee "$OUT/decode_v2_tests.log" | tail -15 ;;
    decode) timeout ${DECODE_TIMEOUT:-110} python3 benchmarks/bench_decode_w4a4.py --out "$OUT/decode.csv" ${DECODE_ARGS:-} 2>&1 | tee "$OUT/decode.log" | tail -${DECODE_TAIL:-30} ;;
    dp4atests) timeout -s INT -k 30 ${DP4A_TEST_TIMEOUT:-90} python3 -m pytest -q --tb=short -p no:cacheprovider ${PYTEST_EXTRA:-} -m gpu tests/gpu/test_dp4a_gpu.py \
                 tests/gpu/test_triton_gpu.py -k "${DP4A_TEST_K:-dp4a or fp8_rounding or nan_group or torch_compile or cuda_graph or (activation_quant_identical and 300) or small_m_candidate or matches_exact}" \
                 2>&1 | tee "$OUT/dp4a_tests.log" | tail -25 ;;
    profile) timeout ${PROFILE_TIMEOUT:-90} python3 benchmarks/profile_eager.py ${PROFILE_ARGS:-} 2>&1 | tee "$OUT/profile_eager.log" | grep "per eager call" ;;
    chunks) timeout ${CHUNKS_TIMEOUT:-240} python3 benchmarks/bench_large_m_chunks.py --out "$OUT/chunks_$TAG.csv" ${CHUNKS_ARGS:-} 2>&1 | tee "$OUT/chunks_$TAG.log" | grep -E "median|wrote|Error|error" ;;
    eagerdecode) timeout ${EAGER_TIMEOUT:-240} python3 benchmarks/bench_eager_decode.py --layers ${EAGER_LAYERS:-8} --out "$OUT/eager_decode_$TAG.csv" ${EAGER_ARGS:-} 2>&1 | tee "$OUT/eager_decode_$TAG.log" | tail -8 ;;
    tp1)   PYTHON=python3 timeout ${TP_TIMEOUT:-60} scripts/tp_nccl_check.sh 1 --out "$OUT/tp_nccl_ws1.json" 2>&1 | tee "$OUT/tp_nccl_ws1.log" | tail -12 ;;
  esac
done
