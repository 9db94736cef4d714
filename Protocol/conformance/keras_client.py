#!/usr/bin/env python3
"""The original demo's client, in Keras, against any server of the HTTP form protocol.

What the original's clients did (../shared/reference/original-behaviour.md):
for each slice L..R of the 12 slices of 5,000 training images, fetch the
server's weights and `datasets` (form POST on / with send=False) and adopt
them if they validate, train 20 epochs, add 5,000 to `datasets`, and send both
back (send=True, weights as JSON text of the six nested lists, in
`get_weights()` order). Running it against `fed server` shows that a real Keras
model reads the server's weights in their layout (kernels [inputs][outputs])
and that the server takes a Keras model's weights; `--evaluate` prints the
accuracy of the server's final model as Keras computes it, to compare with
`fed evaluate` on the server's checkpoint.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python Protocol/conformance/keras_client.py --server 127.0.0.1:5000 \\
        --range 1 2 --data /usr/share/datasets/fashion-mnist --evaluate

Pixels are fed raw (0..255) as the original did, unless --scale. Needs
TensorFlow, so CI does not run it; conformance.py is the stdlib-only client.
"""
import argparse
import gzip
import json
import os
import sys
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

SHAPES = [(784, 200), (200,), (200, 200), (200,), (200, 10), (10,)]


def load(folder, name, offset):
    return np.frombuffer(gzip.open(os.path.join(folder, name)).read(), np.uint8, offset=offset)


def model():
    m = keras.Sequential([
        keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(200), keras.layers.ReLU(),
        keras.layers.Dense(200), keras.layers.ReLU(),
        keras.layers.Dense(10), keras.layers.Softmax(),
    ])
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def post(url, fields):
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as response:
        return response.status, response.read()


def fetch(url, client_id):
    """The server's (datasets, weights), or None if the answer does not validate."""
    status, body = post(url, {"id": client_id, "send": "False"})
    answer = json.loads(body)
    datasets, weights = answer.get("datasets"), answer.get("weights")
    if status != 200 or not isinstance(datasets, int) or datasets < 0 or not isinstance(weights, list):
        return None
    arrays = [np.array(w, dtype=np.float32) for w in weights]
    if [a.shape for a in arrays] != SHAPES:
        return None
    return datasets, arrays


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default="127.0.0.1:5000")
    p.add_argument("--id", default="keras")
    p.add_argument("--range", nargs=2, type=int, default=[1, 1], metavar=("L", "R"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="folder with train-* and t10k-* IDX files (gzip)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--scale", action="store_true", help="scale pixels to [0, 1] (the original fed raw 0..255)")
    p.add_argument("--evaluate", action="store_true", help="at the end, fetch the server's model and evaluate it")
    p.add_argument("--evaluate-only", action="store_true", help="only fetch the server's model and evaluate it")
    args = p.parse_args()
    low, high = args.range
    if not 1 <= low <= high <= 12:
        sys.exit(f"range {low} {high} is invalid: need 1 <= L <= R <= 12")
    url = f"http://{args.server}/"
    divisor = 255.0 if args.scale else 1.0
    images = load(args.data, "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = load(args.data, "train-labels-idx1-ubyte.gz", 8)

    m = model()
    datasets, sent = 0, True
    for s in range(low - 1, high) if not args.evaluate_only else []:
        if sent:
            fetched = fetch(url, args.id)
            if fetched is not None:
                datasets, weights = fetched
                m.set_weights(weights)
                print(f"slice {s + 1}: fetched datasets={datasets}", flush=True)
        x = images[s * 5000:(s + 1) * 5000] / divisor
        y = labels[s * 5000:(s + 1) * 5000]
        m.fit(x, y, epochs=args.epochs, verbose=0)
        datasets += 5000
        weights = json.dumps([w.tolist() for w in m.get_weights()])
        status, body = post(url, {"id": args.id, "send": "True", "datasets": datasets, "weights": weights})
        sent = status == 200
        print(f"slice {s + 1}: sent datasets={datasets}: {status} {body[:60].decode(errors='replace')}", flush=True)

    if args.evaluate or args.evaluate_only:
        fetched = fetch(url, args.id)
        if fetched is None:
            sys.exit("the server's final model does not validate")
        datasets, weights = fetched
        m.set_weights(weights)
        x = load(args.data, "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) / divisor
        y = load(args.data, "t10k-labels-idx1-ubyte.gz", 8)
        accuracy = m.evaluate(x, y, verbose=0)[1]
        print(f"server model (datasets={datasets}) evaluated by Keras: accuracy {accuracy:.4f} on {len(y)} test images")


if __name__ == "__main__":
    main()
