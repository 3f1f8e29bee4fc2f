"""Triton kernels of the GPU fast path (issue 3). One idea per module:

* ``fp_bits``           - exact bit-level helpers: E4M3 rounding, E4M3 decode, E2M1 encode/decode
                          (portable Triton and, on the GPU, a packed PTX decoder);
* ``activation_quant``  - bf16/fp16 activations -> FP4 codes + E4M3 block scales (or the exact
                          dequantized operand ``e2m1(q) * s`` for the GEMM);
* ``gemm``              - the NVFP4 GEMM on tensor cores: FP4 weights dequantized in registers,
                          activations dense, packed FP4, or quantized on the fly; split-K;
* ``gemv``              - the decode GEMM (M <= 4) on CUDA cores;
* ``weight_dequant``    - a packed weight -> its exact fp16/bf16 operand (large-M cuBLAS path);
* ``splitk_reduce``     - sums the split-K partials and applies the epilogue.

Nothing here is imported by ``import nvfp4``: ``triton.jit`` decides at definition time
whether a kernel is compiled or interpreted (``TRITON_INTERPRET=1``), so the launchers in
``nvfp4.ops`` import these modules only when a kernel is first needed.
"""
