"""Triton kernels of the GPU fast path (issue 3). One idea per module:

* ``fp_bits``           - exact bit-level helpers: E4M3 rounding, E4M3 decode, magic-number E2M1
                          rounding, E2M1 decode (portable Triton and, on the GPU, packed PTX decoders
                          at the ``USE_ASM`` levels ``ASM_SM80`` / ``ASM_SM89``);
* ``activation_quant``  - bf16/fp16 activations -> FP4 codes + E4M3 block scales, the exact
                          dequantized operand ``e2m1(q) * s``, or int8 ``2*e2m1`` + fp32 scales;
* ``int_dot``           - FP4 codes -> int8 by byte permutation (``prmt``) and int8 dot products
                          (``dp4a``), with bit-exact emulations for the interpreter;
* ``gemv_dp4a``         - the W4A4 decode GEMV (M <= 4) on integer dot products: exact per-group
                          integer sums, activation quantization fused in, split-K reduced in-kernel;
* ``gemm``              - the NVFP4 GEMM on tensor cores: FP4 weights dequantized in registers
                          (the left register operand, or through shared memory as the right
                          one: ``W_AS_B``), activations dense, packed FP4, or quantized on the
                          fly; split-K;
* ``paired_decode``     - the GEMM's weight decode in few instructions: FP4 pairs 16 bits apart
                          straight into fp16x2/bf16x2 with the block scale, K permuted in groups of 8;
* ``gemv``              - the decode GEMM (M <= 4) on CUDA cores, float decode (W4A16);
* ``gemv_half2``        - a CUDA-core GEMV (M <= 4) on the paired decode (opt-in tuner candidate);
* ``gemm_decode``       - decode GEMM v2 over a repacked weight (opt-in; 0.4-0.55x bf16 on the H200);
* ``weight_dequant``    - a packed weight -> its exact fp16/bf16 operand (large-M cuBLAS path);
* ``splitk_reduce``     - sums the split-K partials and applies the epilogue;
* ``splitk_ticket``     - the same inside a kernel: the last program of a tile (ticket counter) does it;
* ``grid_dependency``   - the opt-in programmatic dependent launch of the decode-path kernels.

Nothing here is imported by ``import nvfp4``: ``triton.jit`` decides at definition time
whether a kernel is compiled or interpreted (``TRITON_INTERPRET=1``), so the launchers in
``nvfp4.ops`` import these modules only when a kernel is first needed.
"""
