"""PyTorch state dicts at sizes other than MNIST's, for the CLI tests of files without metadata
(every size is read from the tensors' shapes). Written by PyTorch, the independent reference.

    /work/venv/bin/python scripts/make-size-fixtures.py           # any Python with torch + safetensors

Writes into Tests/BackpropCLITests/Fixtures/:
  sizes_mlp.safetensors     nn.Sequential(Linear(5,7), ReLU(), Linear(7,4), ReLU(), Linear(4,3))
  sizes_lstm.safetensors    nn.LSTM(5, 7, batch_first=True) as `rnn` + nn.Linear(7, 3) as `fc`
  sizes_gru.safetensors     nn.GRU(3, 4, num_layers=2, batch_first=True) + nn.Linear(4, 2)
  sizes_rnn.safetensors     nn.RNN(2, 6, batch_first=True) (tanh) + nn.Linear(6, 5)
  sizes_*_batch.safetensors input float32 ([4, 5]; [4, 6, 5]; [3, 5, 3]; [2, 3, 2]), target int64 [N]
  sizes_grads.json          cross-entropy loss and every parameter gradient, per model
The other direction (a Backprop file loads into the same PyTorch module with strict=True):
  python scripts/make-size-fixtures.py --check FAMILY FILE.safetensors     (FAMILY: mlp, lstm, gru, rnn)
"""
import json, os, sys
import torch
from safetensors.torch import save_file, load_file

class Seq(torch.nn.Module):
    def __init__(self, cell, f, h, layers, c):
        super().__init__()
        self.rnn = cell(f, h, num_layers=layers, batch_first=True)
        self.fc = torch.nn.Linear(h, c)
    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])

def models():
    torch.manual_seed(0)
    return {
        "mlp": (torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 4), torch.nn.ReLU(),
                                    torch.nn.Linear(4, 3)), [4, 5], 3),
        "lstm": (Seq(torch.nn.LSTM, 5, 7, 1, 3), [4, 6, 5], 3),
        "gru": (Seq(torch.nn.GRU, 3, 4, 2, 2), [3, 5, 3], 2),
        "rnn": (Seq(torch.nn.RNN, 2, 6, 1, 5), [2, 3, 2], 5),
    }

if len(sys.argv) == 4 and sys.argv[1] == "--check":
    model = models()[sys.argv[2]][0]
    state = {k: v for k, v in load_file(sys.argv[3]).items() if not k.startswith("optimizer.")}
    model.load_state_dict(state, strict=True)
    print("loaded with strict=True:", list(model.state_dict()))
    sys.exit(0)

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "BackpropCLITests", "Fixtures")
result = {}
for name, (model, shape, classes) in models().items():
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"sizes_{name}.safetensors"))
    x = torch.randn(*shape)
    labels = torch.randint(0, classes, (shape[0],), dtype=torch.int64)
    save_file({"input": x, "target": labels}, os.path.join(out, f"sizes_{name}_batch.safetensors"))
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    result[name] = {"loss": loss.item(), "gradients": {k: p.grad.flatten().tolist() for k, p in model.named_parameters()}}
with open(os.path.join(out, "sizes_grads.json"), "w") as f:
    json.dump(result, f, indent=1)
print("wrote", sorted(n for n in os.listdir(out) if n.startswith("sizes_")))
