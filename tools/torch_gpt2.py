"""twist's GPT-2 architecture in plain PyTorch, and a reader for twist checkpoints.

Written independently of twist's C code, from the definitions in include/twist/model.h:
pre-LayerNorm blocks, causal multi-head attention, tanh-approximated GELU MLP, tied unembedding,
Hugging Face GPT-2 tensor names and Conv1D layouts (weights stored (in, out)), per-layer head
counts and MLP widths, and block scales that multiply a block's projection but not its bias.

Used by `twist bench step --peer` (the PyTorch side of the comparison) and by the test that opens
a twist checkpoint in PyTorch and compares logits. Needs only the standard library and torch.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, n_embd, heads, head_dim, mlp_hidden, attn_scale, mlp_scale, eps):
        super().__init__()
        width = heads * head_dim
        self.heads, self.head_dim, self.width = heads, head_dim, width
        self.attn_scale, self.mlp_scale = attn_scale, mlp_scale
        self.use_sdpa = False
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.c_attn_weight = nn.Parameter(torch.empty(n_embd, 3 * width))
        self.c_attn_bias = nn.Parameter(torch.zeros(3 * width))
        self.attn_proj_weight = nn.Parameter(torch.empty(width, n_embd))
        self.attn_proj_bias = nn.Parameter(torch.zeros(n_embd))
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.c_fc_weight = nn.Parameter(torch.empty(n_embd, mlp_hidden))
        self.c_fc_bias = nn.Parameter(torch.zeros(mlp_hidden))
        self.mlp_proj_weight = nn.Parameter(torch.empty(mlp_hidden, n_embd))
        self.mlp_proj_bias = nn.Parameter(torch.zeros(n_embd))

    def attention(self, x):
        B, T, _ = x.shape
        qkv = x @ self.c_attn_weight + self.c_attn_bias            # (B, T, 3A)
        q, k, v = qkv.split(self.width, dim=2)
        shape = (B, T, self.heads, self.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if self.use_sdpa:  # PyTorch 2's fused attention, as a PyTorch user would run it
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return y.transpose(1, 2).reshape(B, T, self.width)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        y = F.softmax(scores, dim=-1) @ v                          # (B, H, T, D)
        return y.transpose(1, 2).reshape(B, T, self.width)

    def forward(self, x):
        x = x + self.attn_scale * (self.attention(self.ln_1(x)) @ self.attn_proj_weight) \
              + self.attn_proj_bias
        hidden = F.gelu(self.ln_2(x) @ self.c_fc_weight + self.c_fc_bias, approximate="tanh")
        return x + self.mlp_scale * (hidden @ self.mlp_proj_weight) + self.mlp_proj_bias


class GPT(nn.Module):
    """config: the dict form of a twist config.json (see config_from_json)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        C, eps = config["n_embd"], config["layer_norm_epsilon"]
        self.wte = nn.Parameter(torch.empty(config["vocab_size"], C))
        self.wpe = nn.Parameter(torch.empty(config["n_positions"], C))
        self.blocks = nn.ModuleList(
            Block(C, layer["heads"], config["head_dim"], layer["mlp_hidden"],
                  layer["attn_scale"], layer["mlp_scale"], eps)
            for layer in config["layers"])
        self.ln_f = nn.LayerNorm(C, eps=eps)

    def init_gpt2(self, seed):
        """GPT-2's initialisation (as twist's tw_gpt_init_params, other random numbers)."""
        generator = torch.Generator().manual_seed(seed)
        depth_std = 0.02 / math.sqrt(2 * len(self.blocks))
        with torch.no_grad():
            self.wte.normal_(0.0, 0.02, generator=generator)
            self.wpe.normal_(0.0, 0.01, generator=generator)
            for block in self.blocks:
                block.c_attn_weight.normal_(0.0, 0.02, generator=generator)
                block.c_fc_weight.normal_(0.0, 0.02, generator=generator)
                block.attn_proj_weight.normal_(0.0, depth_std, generator=generator)
                block.mlp_proj_weight.normal_(0.0, depth_std, generator=generator)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.t()                         # (B, T, V)

    def hf_state(self):
        """Parameters under the Hugging Face GPT-2 names twist writes."""
        state = {"transformer.wte.weight": self.wte, "transformer.wpe.weight": self.wpe,
                 "transformer.ln_f.weight": self.ln_f.weight,
                 "transformer.ln_f.bias": self.ln_f.bias}
        for i, b in enumerate(self.blocks):
            p = f"transformer.h.{i}."
            state.update({
                p + "ln_1.weight": b.ln_1.weight, p + "ln_1.bias": b.ln_1.bias,
                p + "attn.c_attn.weight": b.c_attn_weight, p + "attn.c_attn.bias": b.c_attn_bias,
                p + "attn.c_proj.weight": b.attn_proj_weight,
                p + "attn.c_proj.bias": b.attn_proj_bias,
                p + "ln_2.weight": b.ln_2.weight, p + "ln_2.bias": b.ln_2.bias,
                p + "mlp.c_fc.weight": b.c_fc_weight, p + "mlp.c_fc.bias": b.c_fc_bias,
                p + "mlp.c_proj.weight": b.mlp_proj_weight,
                p + "mlp.c_proj.bias": b.mlp_proj_bias})
        return state


def uniform_config(vocab_size, n_positions, n_layer, n_embd, n_head, eps=1e-5):
    layer = {"heads": n_head, "mlp_hidden": 4 * n_embd, "attn_scale": 1.0, "mlp_scale": 1.0}
    return {"vocab_size": vocab_size, "n_positions": n_positions, "n_embd": n_embd,
            "head_dim": n_embd // n_head, "layer_norm_epsilon": eps,
            "layers": [dict(layer) for _ in range(n_layer)]}


def config_from_json(text):
    """A twist config.json (a GPT2Config with an optional "twist" section) as GPT's config."""
    raw = json.loads(text)
    if "twist" not in raw:
        inner = raw.get("n_inner") or 4 * raw["n_embd"]
        config = uniform_config(raw["vocab_size"], raw["n_positions"], raw["n_layer"],
                                raw["n_embd"], raw["n_head"], raw.get("layer_norm_epsilon", 1e-5))
        for layer in config["layers"]:
            layer["mlp_hidden"] = inner
        return config
    return {"vocab_size": raw["vocab_size"], "n_positions": raw["n_positions"],
            "n_embd": raw["n_embd"], "head_dim": raw["twist"]["head_dim"],
            "layer_norm_epsilon": raw.get("layer_norm_epsilon", 1e-5),
            "layers": raw["twist"]["layers"]}


def read_safetensors(path):
    """{name: float32 tensor} from a safetensors file, parsed with the standard library (F32, or
    BF16 as `twist train --save-dtype bf16` writes it, widened to float32)."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_length])
    data = memoryview(blob)[8 + header_length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtypes = {"F32": torch.float32, "BF16": torch.bfloat16}
        if entry["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}, expected F32 or "
                             "BF16")
        begin, end = entry["data_offsets"]
        values = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[entry["dtype"]])
        values = values.float()
        tensors[name] = values.reshape(entry["shape"])
    return tensors


def load_twist_checkpoint(directory):
    """A GPT holding the weights of a twist checkpoint directory; checks every name and shape."""
    with open(os.path.join(directory, "config.json")) as f:
        model = GPT(config_from_json(f.read()))
    tensors = read_safetensors(os.path.join(directory, "model.safetensors"))
    state = model.hf_state()
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise ValueError(f"{directory}: missing tensors {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for name, parameter in state.items():
            if tuple(tensors[name].shape) != tuple(parameter.shape):
                raise ValueError(f"{directory}: {name} has shape {tuple(tensors[name].shape)}, "
                                 f"the config gives {tuple(parameter.shape)}")
            parameter.copy_(tensors[name])
    return model
