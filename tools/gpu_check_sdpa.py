"""PyTorch's peer of `twist bench attention` for tools/gpu-check: fp32 causal
scaled_dot_product_attention on CUDA at one shape, with the memory-efficient kernel and with the
math kernel, forward and backward times (median of --repeat runs after a warm-up, each timed from
launch to torch.cuda.synchronize, as twist times its ops).

Writes one JSON line to --out:
  {"efficient_fwd_ms": ..., "efficient_bwd_ms": ..., "math_fwd_ms": ..., "math_bwd_ms": ...,
   "torch": "2.x", "device_name": "...", "batch": B, "heads": H, "seq_len": T, "head_dim": D}
Exits 77 (gpu-check shows "-" and the reason) when torch, CUDA or SDPA is missing.
"""
import argparse
import json
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    for name in ("batch", "heads", "seq", "head-dim", "repeat"):
        parser.add_argument("--" + name, type=int, required=True)
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as error:
        print(f"skipped: no torch in {sys.executable}: {error}")
        return 77
    if not torch.cuda.is_available():
        print(f"skipped: torch {torch.__version__} in {sys.executable} sees no CUDA device")
        return 77
    attention = getattr(F, "scaled_dot_product_attention", None)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        sdpa_kernel = None
    if attention is None or sdpa_kernel is None:
        print(f"skipped: torch {torch.__version__} lacks scaled_dot_product_attention/sdpa_kernel")
        return 77
    # No TF32 anywhere: twist's contract is fp32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda:0")
    generator = torch.Generator(device=device).manual_seed(1)
    shape = (a.batch, a.heads, a.seq, a.head_dim)  # (B, H, T, D)
    q, k, v = (torch.randn(shape, device=device, dtype=torch.float32, generator=generator)
               .requires_grad_() for _ in range(3))
    dout = torch.randn(shape, device=device, dtype=torch.float32, generator=generator)

    def median(values):
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])

    result = {}
    for name, backend in (("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)):
        fwd, bwd = [], []
        with sdpa_kernel(backend):
            for run in range(a.repeat + 1):  # the first is the warm-up
                for t in (q, k, v):
                    t.grad = None
                torch.cuda.synchronize()
                start = time.perf_counter()
                out = attention(q, k, v, is_causal=True)
                torch.cuda.synchronize()
                middle = time.perf_counter()
                out.backward(dout)
                torch.cuda.synchronize()
                end = time.perf_counter()
                if run:
                    fwd.append(1e3 * (middle - start))
                    bwd.append(1e3 * (end - middle))
                del out
        result[name + "_fwd_ms"] = median(fwd)
        result[name + "_bwd_ms"] = median(bwd)
    result.update({"torch": torch.__version__, "device_name": torch.cuda.get_device_name(device),
                   "batch": a.batch, "heads": a.heads, "seq_len": a.seq, "head_dim": a.head_dim})
    with open(a.out, "w") as f:
        f.write(json.dumps(result, separators=(",", ":")) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
