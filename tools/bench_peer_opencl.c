/* The `opencl:N` peer: CLBlast called directly (CLBlastSgemm, or CLBlastSgemmStridedBatched for
 * batch > 1) on its own cl_context and in-order queue for the same device.
 *
 * opencl:N is the N-th device counting over clGetPlatformIDs order, then clGetDeviceIDs
 * (CL_DEVICE_TYPE_ALL) order within each platform: the numbering the OpenCL backend uses. If the
 * name differs from the one twist reports, a warning says so, since the comparison would then
 * be between two devices. Compiled only when the OpenCL backend is (TWIST_HAVE_OPENCL). */
#ifdef TWIST_HAVE_OPENCL

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CL/cl.h>
#include <clblast_c.h>

#include "bench_peer.h"
#include "cli.h"

typedef struct clblast_state {
    const char *prog;
    bench_gemm_shape shape;
    cl_context context;
    cl_command_queue queue;
    cl_mem a, b, c;
} clblast_state;

/* The N-th device over every platform, CL_DEVICE_TYPE_ALL. */
static int find_device(const char *prog, int wanted, cl_device_id *out) {
    cl_uint platform_count = 0;
    if (clGetPlatformIDs(0, NULL, &platform_count) != CL_SUCCESS || platform_count == 0)
        return cli_runtime_error(prog, "--peer: no OpenCL platform found");
    cl_platform_id *platforms = calloc(platform_count, sizeof *platforms);
    if (!platforms) return cli_runtime_error(prog, "--peer: out of host memory");
    clGetPlatformIDs(platform_count, platforms, NULL);
    int seen = 0, rc = CLI_EXIT_RUNTIME;
    for (cl_uint p = 0; p < platform_count && rc != CLI_EXIT_OK; p++) {
        cl_uint count = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &count) != CL_SUCCESS)
            continue;
        if (wanted < seen + (int)count) {
            cl_device_id *devices = calloc(count, sizeof *devices);
            if (devices &&
                clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, count, devices, NULL) ==
                    CL_SUCCESS) {
                *out = devices[wanted - seen];
                rc = CLI_EXIT_OK;
            }
            free(devices);
            break;
        }
        seen += (int)count;
    }
    free(platforms);
    if (rc != CLI_EXIT_OK)
        return cli_runtime_error(prog, "--peer: OpenCL device %d not found (%d device(s) listed)",
                                 wanted, seen);
    return CLI_EXIT_OK;
}

static int check_cl(const char *prog, cl_int code, const char *what) {
    if (code == CL_SUCCESS) return CLI_EXIT_OK;
    return cli_runtime_error(prog, "--peer: %s failed with OpenCL error %d", what, (int)code);
}

static void clblast_destroy(bench_peer *peer) {
    clblast_state *s = peer->state;
    if (!s) return;
    if (s->a) clReleaseMemObject(s->a);
    if (s->b) clReleaseMemObject(s->b);
    if (s->c) clReleaseMemObject(s->c);
    if (s->queue) clReleaseCommandQueue(s->queue);
    if (s->context) clReleaseContext(s->context);
    free(s);
    peer->state = NULL;
}

static bool clblast_run(bench_peer *peer, double *ms) {
    clblast_state *s = peer->state;
    const bench_gemm_shape *sh = &s->shape;
    CLBlastTranspose ta = sh->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = sh->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    clFinish(s->queue);
    double start = cli_now_ms();
    CLBlastStatusCode status;
    if (sh->batch == 1)
        status = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)sh->m, (size_t)sh->n,
                              (size_t)sh->k, 1.0f, s->a, 0, (size_t)bench_gemm_lda(sh), s->b, 0,
                              (size_t)bench_gemm_ldb(sh), 0.0f, s->c, 0, (size_t)sh->n, &s->queue,
                              NULL);
    else
        status = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor, ta, tb, (size_t)sh->m, (size_t)sh->n, (size_t)sh->k, 1.0f,
            s->a, 0, (size_t)bench_gemm_lda(sh), bench_gemm_a_elements(sh), s->b, 0,
            (size_t)bench_gemm_ldb(sh), bench_gemm_b_elements(sh), 0.0f, s->c, 0, (size_t)sh->n,
            bench_gemm_c_elements(sh), (size_t)sh->batch, &s->queue, NULL);
    cl_int finished = clFinish(s->queue);
    *ms = cli_now_ms() - start;
    if (status != CLBlastSuccess) {
        cli_runtime_error(s->prog, "--peer: CLBlast SGEMM failed with status %d", (int)status);
        return false;
    }
    return check_cl(s->prog, finished, "clFinish after CLBlast") == CLI_EXIT_OK;
}

static bool clblast_result(bench_peer *peer, float *c) {
    clblast_state *s = peer->state;
    size_t bytes = bench_gemm_c_elements(&s->shape) * (size_t)s->shape.batch * sizeof(float);
    cl_int code = clEnqueueReadBuffer(s->queue, s->c, CL_TRUE, 0, bytes, c, 0, NULL, NULL);
    return check_cl(s->prog, code, "reading CLBlast's C") == CLI_EXIT_OK;
}

/* A device buffer of `count` floats, filled from host when `data` is given. */
static int make_buffer(clblast_state *s, size_t count, const float *data, cl_mem *out) {
    cl_int code;
    *out = clCreateBuffer(s->context, CL_MEM_READ_WRITE, count * sizeof(float), NULL, &code);
    if (check_cl(s->prog, code, "clCreateBuffer") != CLI_EXIT_OK) return CLI_EXIT_RUNTIME;
    if (!data) return CLI_EXIT_OK;
    code = clEnqueueWriteBuffer(s->queue, *out, CL_TRUE, 0, count * sizeof(float), data, 0, NULL,
                                NULL);
    return check_cl(s->prog, code, "clEnqueueWriteBuffer");
}

static int setup(clblast_state *s, const tw_device_info *info, const float *a, const float *b) {
    const char *colon = strchr(info->spec, ':');
    int index = colon ? atoi(colon + 1) : 0;
    cl_device_id device;
    if (find_device(s->prog, index, &device) != CLI_EXIT_OK) return CLI_EXIT_RUNTIME;
    char name[256] = "";
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
    if (strcmp(name, info->name) != 0)
        fprintf(stderr, "%s: warning: --peer runs on OpenCL device '%s', twist reports '%s'\n",
                s->prog, name, info->name);
    cl_int code;
    s->context = clCreateContext(NULL, 1, &device, NULL, NULL, &code);
    if (check_cl(s->prog, code, "clCreateContext") != CLI_EXIT_OK) return CLI_EXIT_RUNTIME;
    s->queue = clCreateCommandQueue(s->context, device, 0, &code);
    if (check_cl(s->prog, code, "clCreateCommandQueue") != CLI_EXIT_OK) return CLI_EXIT_RUNTIME;
    const bench_gemm_shape *sh = &s->shape;
    size_t batch = (size_t)sh->batch;
    if (make_buffer(s, bench_gemm_a_elements(sh) * batch, a, &s->a) != CLI_EXIT_OK ||
        make_buffer(s, bench_gemm_b_elements(sh) * batch, b, &s->b) != CLI_EXIT_OK ||
        make_buffer(s, bench_gemm_c_elements(sh) * batch, NULL, &s->c) != CLI_EXIT_OK)
        return CLI_EXIT_RUNTIME;
    return CLI_EXIT_OK;
}

int bench_peer_clblast_create(const char *prog, const tw_device_info *device,
                              const bench_gemm_shape *shape, const float *a, const float *b,
                              bench_peer *out) {
    clblast_state *s = calloc(1, sizeof *s);
    if (!s) return cli_runtime_error(prog, "--peer: out of host memory");
    s->prog = prog;
    s->shape = *shape;
    out->state = s;
    out->run = clblast_run;
    out->result = clblast_result;
    out->destroy = clblast_destroy;
    snprintf(out->name, sizeof out->name, "CLBlast %s",
             shape->batch == 1 ? "CLBlastSgemm" : "CLBlastSgemmStridedBatched");
    if (setup(s, device, a, b) != CLI_EXIT_OK) {
        clblast_destroy(out);
        return CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
}

#else
/* ISO C forbids an empty translation unit. */
typedef int bench_peer_opencl_unused;
#endif
