#!/usr/bin/env python3
"""Reference fixtures for Backprop's recurrent layers, from PyTorch.

Writes Tests/BackpropTests/Fixtures/rnn-reference/*.safetensors:

  classifier-{rnn,lstm,gru}-l{1,2}.safetensors
      The module  s.rnn = nn.X(F, H, num_layers=L, batch_first=True); s.fc = nn.Linear(H, C);
      forward(x) = fc(rnn(x)[0][:, -1])  with cross-entropy on integer labels (mean).
      Tensors: every parameter under its state_dict name (rnn.weight_ih_l0, …, fc.weight, fc.bias),
      input [N, T, F], labels [N] (I64), loss [1], logits [N, C], grad.<name> for every parameter,
      grad.input, hidden_grad_norms [T]: for t = 1…T the batch mean of ‖∂L/∂h_t‖ of the last layer
      (total derivative, from h.retain_grad() on the state of an explicit step-by-step loop).

  layer-{rnn,lstm,gru}-l2.safetensors
      The bare layer with an initial state: out, _ = rnn(x, h0 [, c0]); L = Σ out ⊙ w.
      Tensors: weight_ih_l0 …, input, h0 (c0), w, output, loss, grad.<param>, grad.input,
      grad.h0 (grad.c0).

Weights come from PyTorch's default initialisation (seeded), rounded to float32; the forward
and backward run in float64 so the stored results are exact to float32 rounding.
Run:  /tmp/torchenv/bin/python scripts/make-rnn-reference.py
"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "BackpropTests", "Fixtures",
                   "rnn-reference")
KINDS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def f32(t):
    return t.detach().to(torch.float32).cpu().numpy().copy()


class Seq(torch.nn.Module):
    def __init__(s, kind, F, H, L, C):
        super().__init__()
        s.rnn = KINDS[kind](F, H, num_layers=L, batch_first=True)
        s.fc = torch.nn.Linear(H, C)

    def forward(s, x):
        return s.fc(s.rnn(x)[0][:, -1])


def classifier(kind, L, N=4, T=5, F=5, H=11, C=3, seed=0):
    torch.manual_seed(seed)
    model = Seq(kind, F, H, L, C).double()        # float32 init, exactly widened
    x = torch.randn(N, T, F).double().requires_grad_(True)
    labels = torch.randint(0, C, (N,))
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()

    # Per-step hidden gradients: the same computation as an explicit loop over steps.
    xs = x.detach().clone().requires_grad_(True)
    state = None
    hs = []
    for t in range(T):
        _, state = model.rnn(xs[:, t:t + 1], state)
        h = state[0] if kind == "lstm" else state
        h.retain_grad()
        hs.append(h)
    loss2 = torch.nn.functional.cross_entropy(model.fc(hs[-1][-1]), labels)
    saved = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    loss2.backward()
    # The loop computes the same loss and gradients as the fused module call.
    assert torch.allclose(loss, loss2, atol=1e-12)
    assert torch.allclose(x.grad, xs.grad, atol=1e-12)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, saved[name], atol=1e-12), name
    norms = torch.stack([h.grad[-1].norm(dim=1).mean() for h in hs])

    d = {}
    for name, p in model.named_parameters():
        d[name] = f32(p)
        d["grad." + name] = f32(saved[name])
    d["input"] = f32(x)
    d["labels"] = labels.numpy().astype(np.int64)
    d["logits"] = f32(logits)
    d["loss"] = f32(loss.reshape(1))
    d["grad.input"] = f32(x.grad)
    d["hidden_grad_norms"] = f32(norms)
    save_file(d, os.path.join(OUT, f"classifier-{kind}-l{L}.safetensors"))
    return loss.item()


def layer(kind, L=2, N=3, T=4, F=5, H=11, seed=1):
    torch.manual_seed(seed)
    rnn = KINDS[kind](F, H, num_layers=L, batch_first=True).double()
    x = torch.randn(N, T, F).double().requires_grad_(True)
    h0 = (0.5 * torch.randn(L, N, H)).float().double().requires_grad_(True)
    c0 = (0.5 * torch.randn(L, N, H)).float().double().requires_grad_(True)
    w = torch.randn(N, T, H).float().double()
    out, _ = rnn(x, (h0, c0) if kind == "lstm" else h0)
    loss = (out * w).sum()
    loss.backward()
    d = {}
    for name, p in rnn.named_parameters():
        d[name] = f32(p)
        d["grad." + name] = f32(p.grad)
    d["input"] = f32(x)
    d["h0"] = f32(h0)
    d["w"] = f32(w)
    d["output"] = f32(out)
    d["loss"] = f32(loss.reshape(1))
    d["grad.input"] = f32(x.grad)
    d["grad.h0"] = f32(h0.grad)
    if kind == "lstm":
        d["c0"] = f32(c0)
        d["grad.c0"] = f32(c0.grad)
    save_file(d, os.path.join(OUT, f"layer-{kind}-l{L}.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    for kind in KINDS:
        for L in (1, 2):
            print(kind, L, "loss", classifier(kind, L))
        layer(kind)
    print("torch", torch.__version__, "->", os.path.normpath(OUT))
