#!/usr/bin/env python3
"""The original demo's model in Keras (TensorFlow backend), trained over several seeds.

This is the accuracy and speed reference for `fed bench train`: the same
schedule as the original (Flatten -> Dense(200) -> ReLU -> Dense(200) -> ReLU
-> Dense(10) -> Softmax, sparse categorical cross-entropy, Adam with Keras's
defaults, batch 32, 20 epochs, reshuffled every epoch) on pixels scaled to
[0, 1]. It prints the test accuracy and training seconds per seed, then the
spread, to compare with `fed bench train --seeds N` on the same data.

Data: a folder of MNIST-format IDX files (gzip). With training images (e.g.
Fashion-MNIST), the first 5,000 train and the full test set evaluates; with
only the t10k files (the MNIST digits in ../shared/data/mnist), the first
5,000 test images train and the other 5,000 evaluate.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python Benchmarks/keras_reference.py [SEEDS] [DATA_DIR]
    (defaults: 12 seeds, /usr/share/datasets/fashion-mnist)

TensorFlow is not a dependency of the project: CI does not run this script.
"""
import gzip
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

# The original's model, defined once, in the Keras client of Protocol/conformance.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "conformance"))
from keras_client import model  # noqa: E402


def load(folder, name, offset):
    return np.frombuffer(gzip.open(os.path.join(folder, name)).read(), np.uint8, offset=offset)


def data(folder):
    images = lambda kind: load(folder, f"{kind}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) / 255.0
    labels = lambda kind: load(folder, f"{kind}-labels-idx1-ubyte.gz", 8)
    if os.path.exists(os.path.join(folder, "train-images-idx3-ubyte.gz")):
        return images("train")[:5000], labels("train")[:5000], images("t10k"), labels("t10k")
    x, y = images("t10k"), labels("t10k")
    return x[:5000], y[:5000], x[5000:], y[5000:]


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    folder = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    x_train, y_train, x_test, y_test = data(folder)
    print(f"data: {len(x_train)} training, {len(x_test)} test samples from {folder}")
    accuracies = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        m = model()
        start = time.perf_counter()
        m.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
        seconds = time.perf_counter() - start
        accuracy = m.evaluate(x_test, y_test, verbose=0)[1]
        accuracies.append(accuracy)
        print(f"  seed {seed}: {accuracy:.4f}  ({seconds:.1f} s)", flush=True)
    sd = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(f"  mean {statistics.mean(accuracies):.4f}  sd {sd:.4f}  min {min(accuracies):.4f}"
          f"  median {statistics.median(accuracies):.4f}  max {max(accuracies):.4f}  ({len(accuracies)} runs)")


if __name__ == "__main__":
    main()
