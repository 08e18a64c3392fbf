"""The PyTorch side of `twist bench step --peer`: tokens per second of full training steps
(forward, backward, AdamW) of the same model, batch and sequence length as twist's run.

Prints one JSON line: {"tokens_per_s": ..., "step_ms": [...], "threads": ..., "torch": ...}.
twist writes this file and torch_gpt2.py (both embedded in the binary) into a temporary
directory and runs it with /usr/bin/python3.
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
    a = parser.parse_args()

    torch.manual_seed(a.seed)
    model = GPT(uniform_config(a.vocab, a.seq_len, a.layers, a.embd, a.heads))
    model.init_gpt2(a.seed)
    # As twist: weight decay on matrices and embeddings only, betas (0.9, 0.95), norm clip 1.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": other, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq_len + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

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
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
