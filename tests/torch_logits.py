"""Opens a twist checkpoint in PyTorch and compares its logits with twist's.

Usage: torch_logits.py TOOLS_DIR CHECKPOINT_DIR LOGITS_FILE
LOGITS_FILE (written by test_torch_logits): int32 B, T, V; int32 tokens (B, T); float32 logits
(B, T, V) as twist computed them. The model is tools/torch_gpt2.py's GPT, a PyTorch version of
twist's architecture written independently of the C code, loaded from the checkpoint's
config.json and model.safetensors by name and shape. Exits 0 when the largest absolute
difference is at most 1e-4, 1 otherwise.
"""
import struct
import sys

import torch

TOLERANCE = 1e-4


def main():
    tools_dir, checkpoint, logits_file = sys.argv[1:4]
    sys.path.insert(0, tools_dir)
    from torch_gpt2 import load_twist_checkpoint

    with open(logits_file, "rb") as f:
        blob = f.read()
    B, T, V = struct.unpack("<3i", blob[:12])
    tokens = torch.frombuffer(bytearray(blob[12:12 + 4 * B * T]), dtype=torch.int32)
    expected = torch.frombuffer(bytearray(blob[12 + 4 * B * T:]), dtype=torch.float32)
    model = load_twist_checkpoint(checkpoint)
    with torch.no_grad():
        logits = model(tokens.reshape(B, T).long())
    difference = (logits.reshape(-1) - expected).abs().max().item()
    largest = expected.abs().max().item()
    print(f"{checkpoint}: PyTorch logits ({B}, {T}, {V}) vs twist: max |diff| {difference:.3e} "
          f"(max |logit| {largest:.3f}, tolerance {TOLERANCE:g})")
    return 0 if difference <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
