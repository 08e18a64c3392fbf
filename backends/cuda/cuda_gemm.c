/* GEMM through cuBLAS, the CUDA backend's only GEMM: cublasSgemmStridedBatched in fp32,
 * cublasGemmStridedBatchedEx in bf16 and f16 (A and B of the type, C of the type or fp32,
 * CUBLAS_COMPUTE_32F: tensor cores with fp32 accumulation; the handle's math mode keeps split-K
 * reductions in fp32 too, see cuda_open).
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
    void *c = tw_cuda_ptr(args->c);
    tw_cuda_range_push("twist:gemm");
    /* k == 0 or alpha == 0: only C = beta C is meant, and A, B need not be touched. */
    if (args->k == 0 || args->alpha == 0.0f) {
        cudaError_t err = tw_cuda_launch_scale_matrix(
            cu->stream, (tw_cuda_type)args->c.dtype, c, args->m, args->n, args->ldc,
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
    if (args->dtype != TW_DTYPE_F32) {
        /* bf16/f16 inputs; C (args->c.dtype) the same type or fp32; alpha and beta are floats
         * as CUBLAS_COMPUTE_32F wants. Swapped operands as above. */
        const cudaDataType_t ab_type = args->dtype == TW_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
        const cudaDataType_t c_type = args->c.dtype == TW_DTYPE_F32 ? CUDA_R_32F : ab_type;
        cublasStatus_t status = cublasGemmStridedBatchedEx(
            cu->cublas, op_b, op_a, args->n, args->m, args->k, &alpha, tw_cuda_ptr(args->b),
            ab_type, (int)args->ldb, (long long)args->stride_b, tw_cuda_ptr(args->a), ab_type,
            (int)args->lda, (long long)args->stride_a, &beta, c, c_type, (int)args->ldc,
            (long long)args->stride_c, args->batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        tw_cuda_range_pop();
        return status == CUBLAS_STATUS_SUCCESS
                   ? TW_OK
                   : tw_cublas_fail(status, "cublasGemmStridedBatchedEx");
    }
    /* cuBLAS does not read C when beta == 0, as twist requires. */
    cublasStatus_t status = cublasSgemmStridedBatched(
        cu->cublas, op_b, op_a, args->n, args->m, args->k, &alpha, tw_cuda_f32(args->b),
        (int)args->ldb, (long long)args->stride_b, tw_cuda_f32(args->a), (int)args->lda,
        (long long)args->stride_a, &beta, (float *)c, (int)args->ldc, (long long)args->stride_c,
        args->batch);
    tw_cuda_range_pop();
    return status == CUBLAS_STATUS_SUCCESS ? TW_OK
                                           : tw_cublas_fail(status, "cublasSgemmStridedBatched");
}
