"""Fixtures for the CLI tests, written by PyTorch (the independent reference).

    /tmp/torchenv/bin/python scripts/make-cli-fixtures.py     # any Python with torch + safetensors

Writes into Tests/BackpropCLITests/Fixtures/:
  torch_mlp.safetensors     nn.Sequential(Linear(8,6), ReLU(), Linear(6,3)).state_dict(), saved by
                            safetensors.torch WITHOUT Backprop metadata (loads with --layers 8,6,3)
  batch.safetensors         input float32 [5, 8], target int64 [5]
  batch_mse.safetensors     input float32 [5, 8], target float32 [5, 3]
  torch_grads.json          loss and every parameter gradient for both batches (cross-entropy, MSE)
Check of the other direction (a Backprop model file loads into torch.nn.Sequential):
  python scripts/make-cli-fixtures.py --check FILE.safetensors 784,256,128,10
"""
import json, os, sys
import torch
from safetensors.torch import save_file, load_file

def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)

if len(sys.argv) == 4 and sys.argv[1] == "--check":
    model = mlp([int(s) for s in sys.argv[3].split(",")])
    state = load_file(sys.argv[2])
    state = {k: v for k, v in state.items() if not k.startswith("optimizer.")}
    model.load_state_dict(state, strict=True)
    print("loaded into torch.nn.Sequential:", [k for k in model.state_dict()])
    sys.exit(0)

torch.manual_seed(0)
out = os.path.join(os.path.dirname(__file__), "..", "Tests", "BackpropCLITests", "Fixtures")
model = mlp([8, 6, 3])
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "torch_mlp.safetensors"))
x = torch.randn(5, 8)
labels = torch.tensor([0, 2, 1, 2, 0], dtype=torch.int64)
target = torch.randn(5, 3)
save_file({"input": x, "target": labels}, os.path.join(out, "batch.safetensors"))
save_file({"input": x, "target": target}, os.path.join(out, "batch_mse.safetensors"))
result = {}
for name, loss_fn, t in [("cross-entropy", torch.nn.functional.cross_entropy, labels),
                         ("mse", torch.nn.functional.mse_loss, target)]:
    model.zero_grad()
    loss = loss_fn(model(x), t)
    loss.backward()
    result[name] = {"loss": loss.item(),
                    "gradients": {k: p.grad.flatten().tolist() for k, p in model.named_parameters()}}
with open(os.path.join(out, "torch_grads.json"), "w") as f:
    json.dump(result, f, indent=1)
print("wrote", sorted(os.listdir(out)))
