/* GEMM through cuBLAS (cublasSgemmStridedBatched), the CUDA backend's only GEMM.
 *
 * twist's matrices are row-major and cuBLAS's column-major. A row-major (r, c) matrix with row
 * stride ld is the column-major (c, r) matrix with leading dimension ld, i.e. its transpose, so
 *   C = op(A) op(B)  (row-major)   <=>   C^T = op(B)^T op(A)^T  (column-major)
 * and the call swaps the operands and m with n, keeping each operand's own transpose flag.
 *
 * Math mode: CUBLAS_DEFAULT_MATH (plain fp32 FMA) unless TWIST_CUDA_TF32=1 chose TF32 tensor
 * cores when the device was opened (NVIDIA_TF32_OVERRIDE=0 forbids TF32 whatever is asked). */
#include <limits.h>

#include "cuda_internal.h"
#include "cuda_kernels.h"

tw_status tw_cuda_set_gemm_impl(void *context, tw_gemm_impl impl) {
    (void)context;
    if (impl == TW_GEMM_AUTO || impl == TW_GEMM_VENDOR) return TW_OK;
    return tw_error(TW_ERR_UNSUPPORTED,
                    "cuda: GEMM is cuBLAS only (no twist kernel of its own on this backend)");
}

tw_status tw_cuda_gemm(void *context, const tw_gemm_args *args) {
    tw_cuda_context *cu = context;
    TW_TRY(tw_cuda_activate(cu));
    float *c = tw_cuda_f32(args->c);
    tw_cuda_range_push("twist:gemm");
    /* k == 0 or alpha == 0: only C = beta C is meant, and A, B need not be touched. */
    if (args->k == 0 || args->alpha == 0.0f) {
        cudaError_t err = tw_cuda_launch_scale_matrix(cu->stream, c, args->m, args->n, args->ldc,
                                               args->stride_c, args->batch, args->beta);
        tw_cuda_range_pop();
        return err == cudaSuccess ? TW_OK : tw_cuda_fail(err, "gemm (C = beta C)");
    }
    if (args->lda > INT_MAX || args->ldb > INT_MAX || args->ldc > INT_MAX) {
        tw_cuda_range_pop();
        return tw_error(TW_ERR_UNSUPPORTED, "cuda: gemm: a leading dimension exceeds INT_MAX");
    }
    const cublasOperation_t op_a = args->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = args->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const float alpha = args->alpha, beta = args->beta;
    /* cuBLAS does not read C when beta == 0, as twist requires. */
    cublasStatus_t status = cublasSgemmStridedBatched(
        cu->cublas, op_b, op_a, args->n, args->m, args->k, &alpha, tw_cuda_f32(args->b),
        (int)args->ldb, (long long)args->stride_b, tw_cuda_f32(args->a), (int)args->lda,
        (long long)args->stride_a, &beta, c, (int)args->ldc, (long long)args->stride_c,
        args->batch);
    tw_cuda_range_pop();
    return status == CUBLAS_STATUS_SUCCESS ? TW_OK
                                           : tw_cublas_fail(status, "cublasSgemmStridedBatched");
}
