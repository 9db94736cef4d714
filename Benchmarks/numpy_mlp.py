#!/usr/bin/env python3
"""NumPy reference of the MLP that FedModel implements, for cross-checking accuracy.

Same math as Sources/FedModel: 784-200-200-10, ReLU, softmax + sparse
cross-entropy, Glorot-uniform kernels, zero biases, Adam in Keras 3's form
(lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7), batch 32, reshuffled every
epoch, 20 epochs on the first 5,000 training images, pixels scaled to [0, 1].
Prints the test accuracy per seed, to compare with `fed bench train --seed S`
(the generators differ, so compare distributions over seeds, not single runs).

    python3 Benchmarks/numpy_mlp.py [SEEDS] [DATA_DIR]
    (DATA_DIR defaults to /usr/share/datasets/fashion-mnist; needs numpy)
"""
import gzip
import sys

import numpy as np


def load(path, offset):
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


d = (sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist") + "/"
Xtr = load(d + "train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:5000].astype(np.float32) / 255
ytr = load(d + "train-labels-idx1-ubyte.gz", 8)[:5000]
Xte = load(d + "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255
yte = load(d + "t10k-labels-idx1-ubyte.gz", 8)
def run(seed):
    rng=np.random.default_rng(seed)
    sizes=[784,200,200,10]
    W=[rng.uniform(-np.sqrt(6/(a+b)),np.sqrt(6/(a+b)),(a,b)).astype(np.float32) for a,b in zip(sizes,sizes[1:])]
    B=[np.zeros(b,np.float32) for b in sizes[1:]]
    P=W+B; M=[np.zeros_like(p) for p in P]; V=[np.zeros_like(p) for p in P]; t=0
    for ep in range(20):
        order=rng.permutation(5000)
        for s in range(0,5000,32):
            idx=order[s:s+32]; x=Xtr[idx]; y=ytr[idx]; n=len(idx)
            h1=np.maximum(x@W[0]+B[0],0); h2=np.maximum(h1@W[1]+B[1],0); z=h2@W[2]+B[2]
            z=z-z.max(1,keepdims=True); e=np.exp(z); p=e/e.sum(1,keepdims=True)
            dz=p; dz[np.arange(n),y]-=1; dz/=n
            gW2=h2.T@dz; gb2=dz.sum(0); dh2=dz@W[2].T*(h2>0)
            gW1=h1.T@dh2; gb1=dh2.sum(0); dh1=dh2@W[1].T*(h1>0)
            gW0=x.T@dh1; gb0=dh1.sum(0)
            G=[gW0,gW1,gW2,gb0,gb1,gb2]; t+=1
            a=0.001*np.sqrt(1-0.999**t)/(1-0.9**t)
            for i in range(6):
                M[i]+=(G[i]-M[i])*0.1; V[i]+=(G[i]*G[i]-V[i])*0.001
                P[i]-=a*M[i]/(np.sqrt(V[i])+1e-7)
    h=np.maximum(np.maximum(Xte@W[0]+B[0],0)@W[1]+B[1],0)@W[2]+B[2]
    return (h.argmax(1)==yte).mean()
for s in range(int(sys.argv[1])): print(s, run(s), flush=True)
