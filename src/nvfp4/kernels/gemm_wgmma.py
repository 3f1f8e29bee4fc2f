"""The NVFP4 GEMM for Hopper in Gluon: the weight decode overlapped with the wgmma.

Same contract as ``gemm.py`` with ``A_MODE = A_DENSE`` and ``W_AS_B = True``:
``out[m, n] = cast(alpha[n] * sum_k A[m, k] * W[n, k]) + bias[n]`` (or fp32 split-K partials),
``A`` an exact fp16/bf16 operand, ``W`` packed FP4 codes with E4M3 scales per 16, decoded to
``e2m1 * s`` in ``OP_DTYPE`` (exact, reference sheet §4), fp32 accumulation.

Why a second kernel: in the Triton-language kernel the decoded weight tile is stored to
shared memory right before its wgmma, and Triton then waits for that wgmma before the next
decode (it cannot prove the buffer is free), so decode and tensor cores take turns
(``raw/h200_tile_sweep_mid_m.log``: 0.57-0.72x bf16 at M = 128). Gluon exposes the shared
memory and the wgmma wait, so here the decoded tile is double-buffered:

    iteration i:  wait for the copies of K tile i (cp.async ring of NUM_STAGES: A tile,
                  packed weight bytes, scale bytes)
                  decode weight tile i -> wdec[i % 2]; fence; barrier
                  wgmma(A[i], wdec[i % 2]) asynchronously
                  wait until at most 1 wgmma is in flight (tile i-1 done); barrier
                  issue the copies of tile i + NUM_STAGES - 1 into the freed stage

so the decode of tile i + 1 runs while the tensor cores multiply tile i.

Decoding: ``gl.fp4_to_fp`` (Triton's e2m1 upcast, low nibble first) and the hardware E4M3 ->
fp16/bf16 conversion, both exact; the product of an E2M1 value and an E4M3 scale is exact
in fp16 and bf16. Rows past M / N are clamped to valid rows (never stored), so every load is
unmasked; K must be a whole number of ``BLOCK_K`` tiles per split (the launcher only offers
this kernel then). GPU only (Gluon has no interpreter); ``tests/test_triton_compile.py``
compiles it for sm_90 on the CPU and ``tests/gpu`` checks it against the exact reference.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait


@gluon.constexpr_function
def _mma_warps(block_m, num_warps):
    # wgmma's atom is 4 warps along M (64 rows); extra warps go along M while rows remain.
    return [num_warps, 1] if block_m >= 16 * num_warps else [4, num_warps // 4]


@gluon.constexpr_function
def _rows_layout_params(row_bytes, vector):
    # threads along a row of ``row_bytes`` bytes loaded ``vector`` bytes per thread
    per_row = max(1, min(32, row_bytes // vector))
    return [32 // per_row, per_row]


@gluon.jit
def _issue_tile_copies(a_smem, wp_smem, ws_smem, stage, a_ptrs, w_ptrs, ws_ptrs, tile,
                       HALF_K: gl.constexpr, GROUPS: gl.constexpr, BLOCK_K: gl.constexpr):
    async_copy.async_copy_global_to_shared(a_smem.index(stage), a_ptrs + tile * BLOCK_K)
    async_copy.async_copy_global_to_shared(wp_smem.index(stage), w_ptrs + tile * HALF_K)
    async_copy.async_copy_global_to_shared(ws_smem.index(stage), ws_ptrs + tile * GROUPS)


@gluon.jit
def nvfp4_gemm_wgmma_kernel(
    a_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_am,
    stride_wn,  # K/2
    stride_ws,  # K/16
    TILES_PER_SPLIT,
    HAS_BIAS: gl.constexpr, WRITE_PARTIAL: gl.constexpr, OP_DTYPE: gl.constexpr,
    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, NUM_STAGES: gl.constexpr,
    num_warps: gl.constexpr,
):
    HALF_K: gl.constexpr = BLOCK_K // 2
    GROUPS: gl.constexpr = BLOCK_K // 16
    pid_n = gl.program_id(0)
    pid_m = gl.program_id(1)
    pid_k = gl.program_id(2)

    # Register layouts of the copies: 16 bytes per thread along K.
    a_tpw: gl.constexpr = _rows_layout_params(BLOCK_K * 2, 16)
    a_layout: gl.constexpr = gl.BlockedLayout([1, 8], a_tpw, [num_warps, 1], [1, 0])
    w_tpw: gl.constexpr = _rows_layout_params(HALF_K, 16)
    w_layout: gl.constexpr = gl.BlockedLayout([1, 16], w_tpw, [num_warps, 1], [1, 0])
    s_tpw: gl.constexpr = _rows_layout_params(GROUPS, 4)
    s_layout: gl.constexpr = gl.BlockedLayout([1, 4], s_tpw, [num_warps, 1], [1, 0])
    # The decode works on [BLOCK_N, GROUPS, 8] bytes: a thread holds whole groups, so its
    # scale multiplies its own values (no data exchange).
    g_layout: gl.constexpr = gl.BlockedLayout([1, 1, 8], [32 // GROUPS if GROUPS < 32 else 1, min(GROUPS, 32), 1],
                                              [num_warps, 1, 1], [2, 1, 0])

    mma_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=_mma_warps(BLOCK_M, num_warps), instr_shape=[16, BLOCK_N, 16])
    a_shared: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_K], OP_DTYPE)
    w_shared: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_K], OP_DTYPE)
    plain: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])

    a_smem = gl.allocate_shared_memory(OP_DTYPE, [NUM_STAGES, BLOCK_M, BLOCK_K], a_shared)
    wp_smem = gl.allocate_shared_memory(gl.uint8, [NUM_STAGES, BLOCK_N, HALF_K], plain)
    ws_smem = gl.allocate_shared_memory(gl.uint8, [NUM_STAGES, BLOCK_N, GROUPS], plain)
    wdec = gl.allocate_shared_memory(OP_DTYPE, [2, BLOCK_N, BLOCK_K], w_shared)

    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    rows_a = ((pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, a_layout))) % M).to(gl.int64)
    cols_a = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, a_layout))
    a_ptrs = a_ptr + rows_a[:, None] * stride_am + (k_first + cols_a)[None, :]
    rows_w = ((pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, w_layout))) % N).to(gl.int64)
    cols_w = gl.arange(0, HALF_K, layout=gl.SliceLayout(0, w_layout))
    w_ptrs = w_ptr + rows_w[:, None] * stride_wn + (k_first // 2 + cols_w)[None, :]
    rows_s = ((pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, s_layout))) % N).to(gl.int64)
    cols_s = gl.arange(0, GROUPS, layout=gl.SliceLayout(0, s_layout))
    ws_ptrs = w_scale_ptr + rows_s[:, None] * stride_ws + (k_first // 16 + cols_s)[None, :]

    for s in gl.static_range(NUM_STAGES - 1):
        if s < TILES_PER_SPLIT:
            _issue_tile_copies(a_smem, wp_smem, ws_smem, s, a_ptrs, w_ptrs, ws_ptrs, s, HALF_K, GROUPS, BLOCK_K)
        async_copy.commit_group()

    acc = gl.zeros((BLOCK_M, BLOCK_N), dtype=gl.float32, layout=mma_layout)
    for i in range(TILES_PER_SPLIT):
        stage = i % NUM_STAGES
        async_copy.wait_group(NUM_STAGES - 2)  # this thread's copies of tile i have landed
        gl.thread_barrier()  # ... and every other thread's
        packed = wp_smem.index(stage).reshape([BLOCK_N, GROUPS, 8]).load(g_layout)
        scale_bytes = ws_smem.index(stage).load(gl.SliceLayout(2, g_layout))
        values = gl.fp4_to_fp(packed, OP_DTYPE, 2)  # [BLOCK_N, GROUPS, 16], low nibble first
        scale = scale_bytes.to(gl.float8e4nv, bitcast=True).to(OP_DTYPE)
        # Same threads as the bytes they scale: a relabelling of registers, no data movement.
        scale = gl.convert_layout(scale, gl.SliceLayout(2, values.type.layout))
        w = gl.reshape(values * scale[:, :, None], [BLOCK_N, BLOCK_K])
        buf = wdec.index(i % 2)
        buf.store(w)
        fence_async_shared()  # generic-proxy stores -> visible to the wgmma (async proxy)
        gl.thread_barrier()
        acc = warpgroup_mma(a_smem.index(stage), buf.permute((1, 0)), acc, is_async=True)
        # Tile i-1's wgmma is done: its A stage and decode buffer may be overwritten.
        acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
        gl.thread_barrier()  # (every warpgroup's, before any thread reuses them)
        nxt = i + NUM_STAGES - 1
        if nxt < TILES_PER_SPLIT:
            _issue_tile_copies(a_smem, wp_smem, ws_smem, nxt % NUM_STAGES, a_ptrs, w_ptrs, ws_ptrs, nxt,
                               HALF_K, GROUPS, BLOCK_K)
        async_copy.commit_group()
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    async_copy.wait_group(0)

    offs_m = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, mma_layout))
    offs_n = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout))
    m_mask = offs_m < M
    n_mask = offs_n < N
    mask = m_mask[:, None] & n_mask[None, :]
    out_offs = offs_m.to(gl.int64)[:, None] * N + offs_n.to(gl.int64)[None, :]
    if WRITE_PARTIAL:
        gl.store(partial_ptr + pid_k.to(gl.int64) * M * N + out_offs, acc, mask=mask)
    else:
        alpha = gl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
        y = (acc * alpha[None, :]).to(out_ptr.dtype.element_ty)  # round once, then the bias (as the reference)
        if HAS_BIAS:
            bias = gl.load(bias_ptr + offs_n, mask=n_mask, other=0.0)
            y = y + bias[None, :]
        gl.store(out_ptr + out_offs, y, mask=mask)
