"""The PyTorch side of `twist bench step --peer`: tokens per second of full training steps
(forward, backward, AdamW) of the same model, batch and sequence length as twist's run.

Prints one JSON line: {"tokens_per_s": ..., "step_ms": [...], "threads": ..., "torch": ...},
or {"skipped": "why"} when this PyTorch cannot run the device and precision asked.
twist writes this file and torch_gpt2.py (both embedded in the binary) into a temporary
directory and runs it with $TWIST_PYTHON (default /usr/bin/python3).

--device cuda:N runs on that GPU (a CUDA build of torch needed), anything else on the CPU.
--precision bf16 / fp16 is what a PyTorch user runs: fp32 weights and AdamW under
torch.autocast (fp16 with a GradScaler), F.scaled_dot_product_attention where this PyTorch has
it (2.0+), and the fused AdamW on CUDA where it exists.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from torch_gpt2 import GPT, uniform_config


def main():
    parser = argparse.ArgumentParser()
    for name in ("layers", "embd", "heads", "seq-len", "vocab", "batch", "steps", "warmup"):
        parser.add_argument("--" + name, type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mlp", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    a = parser.parse_args()

    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(json.dumps({"skipped": f"this PyTorch ({torch.__version__}) has no CUDA device"}))
        return
    device = torch.device(a.device if cuda else "cpu")
    if a.precision == "fp16" and not cuda:
        print(json.dumps({"skipped": "PyTorch's fp16 autocast runs on CUDA devices only"}))
        return
    sdpa = hasattr(F, "scaled_dot_product_attention")

    torch.manual_seed(a.seed)
    config = uniform_config(a.vocab, a.seq_len, a.layers, a.embd, a.heads)
    if a.mlp:
        for layer in config["layers"]:
            layer["mlp_hidden"] = a.mlp
    model = GPT(config)
    model.init_gpt2(a.seed)
    model.to(device)
    for block in model.blocks:
        block.use_sdpa = sdpa and a.precision != "fp32"
    # As twist: weight decay on matrices and embeddings only, betas (0.9, 0.95), norm clip 1.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    extra = {}
    if cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
        extra["fused"] = True
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **extra)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq_len + 1)).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
    scaler = torch.cuda.amp.GradScaler() if a.precision == "fp16" else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=low, enabled=low is not None):
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, a.vocab).float(), targets.reshape(-1))
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return loss.item()  # waits for the device

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"tokens_per_s": a.batch * a.seq_len / median,
                      "step_ms": [round(t * 1e3, 2) for t in times],
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "device": str(device), "precision": a.precision,
                      "sdpa": model.blocks[0].use_sdpa, "fused_adamw": bool(extra)}))


if __name__ == "__main__":
    main()
