#!/usr/bin/python3
"""PyTorch peer of ringtrain's default training run, for side-by-side benchmarks.

Same model and training as `ringtrain train` with its defaults:
  MLP 784-256-128-10, ReLU, CrossEntropyLoss (mean over the batch),
  SGD momentum 0.9, lr = 0.1 * global_batch / 256 (no warm-up, no decay),
  64 rows per process and step, Fashion-MNIST from the IDX .gz files,
  pixels / 255, 10% of the 60000 training rows held out (seeded), so 54000
  training rows, as ringtrain's data.val_fraction=0.1.
Data parallelism: 1 process (plain model), or N processes with
DistributedDataParallel over gloo (spawned here; MASTER_ADDR=127.0.0.1, no
torchrun). Rank r trains on rows r::N of the training rows (floor(rows/N) each),
reshuffled every epoch with a generator keyed by (seed, epoch, rank); the last
batch of an epoch may be short (no drop_last), as in ringtrain.

Timing: only the training steps of each epoch (forward, loss, backward with
DDP's all-reduce, optimizer step), between two barriers. Reading the files,
the epoch's shuffle and gather of its rows, evaluation and process start-up
are excluded. samples/s = training rows of all processes / training seconds.

Output: one line per epoch, then a last line that is a JSON object, e.g.
  {"framework": "pytorch", "procs": 2, "samples_per_s": ..., "steps": ..., "test_accuracy": ...}
("steps": optimizer steps of each process over all epochs; train_seconds / steps
is the time per step.)

Run it with /usr/bin/python3 (Debian's python3-torch); with libopenblas0-serial
installed torch's GEMM is about 20x faster than with the reference BLAS.
"""
import argparse
import gzip
import json
import os
import socket
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, default=1, help="processes (1: no DDP; >1: DDP over gloo)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-per-proc", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="base lr at --ref-batch")
    p.add_argument("--ref-batch", type=int, default=256)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training rows held out (not trained on)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument("--bind", choices=["auto", "core", "none"], default="auto",
                   help="pin rank r to core r (auto: when procs <= cores)")
    p.add_argument("--json-out", help="also write the final JSON object to this file")
    a = p.parse_args(argv)
    if a.procs < 1 or a.epochs < 1 or a.batch_per_proc < 1:
        p.error("--procs, --epochs and --batch-per-proc must be >= 1")
    if not 0 <= a.val_fraction < 1:
        p.error("--val-fraction must be in [0, 1)")
    return a


def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array of its stored type (uint8 here)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data_dir, split):
    x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    return x.reshape(len(x), -1), y


def to_tensors(x_u8, y_u8, rows):
    x = torch.from_numpy(x_u8[rows].astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(y_u8[rows].astype(np.int64))
    return x, y


def make_model():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def blas_library():
    """The BLAS shared object torch actually loaded (after one matmul)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    # Keep the parent folder: Debian's alternatives put OpenBLAS's libblas.so.3
    # in .../openblas-serial/, the reference one in .../blas/.
    short = {os.path.join(*os.path.realpath(l).split(os.sep)[-2:]) for l in libs}
    return ",".join(sorted(short)) or "unknown"


@torch.no_grad()
def accuracy(model, x, y):
    correct = 0
    for i in range(0, len(x), 1024):
        correct += int((model(x[i:i + 1024]).argmax(1) == y[i:i + 1024]).sum())
    return correct / max(len(x), 1)


def barrier(p):
    if p > 1:
        dist.barrier()


def train_epoch(model, opt, loss_fn, xe, ye, batch):
    """The timed part: every step of one epoch. Returns the mean training loss."""
    loss_sum, rows = 0.0, len(xe)
    for start in range(0, rows, batch):
        xb, yb = xe[start:start + batch], ye[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(xb)
    return loss_sum / rows


def setup_process(rank, args, port):
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    cores = sorted(os.sched_getaffinity(0))
    if args.bind == "core" or (args.bind == "auto" and args.procs <= len(cores)):
        os.sched_setaffinity(0, {cores[rank % len(cores)]})
    if args.procs > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=args.procs)


def worker(rank, args, port):
    p = args.procs
    setup_process(rank, args, port)
    x_all, y_all = load_split(args.data_dir, "train")
    n = len(x_all)
    n_val = int(round(args.val_fraction * n))
    perm = np.random.default_rng(args.seed).permutation(n)
    val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    per_rank = len(train_rows) // p
    xs, ys = to_tensors(x_all, y_all, train_rows[rank::p][:per_rank])

    global_batch = args.batch_per_proc * p
    lr = args.lr * global_batch / args.ref_batch
    torch.manual_seed(args.seed)
    model = make_model()
    if p > 1:  # DDP broadcasts rank 0's parameters at construction
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    plain = model.module if p > 1 else model
    if rank == 0:
        blas = blas_library()
        print(f"pytorch {torch.__version__} ({blas}): {p} process(es), {args.threads} thread(s) each, "
              f"{'DDP gloo' if p > 1 else 'no DDP'}; {per_rank * p} training rows ({per_rank} per process); "
              f"batch {args.batch_per_proc} x {p} = {global_batch}; lr {lr:g}", flush=True)
        if "openblas" not in blas and "mkl" not in blas:
            print("warning: torch is not using OpenBLAS/MKL; install libopenblas0-serial "
                  "(the reference BLAS is about 20x slower)", flush=True)
        xv, yv = to_tensors(x_all, y_all, val_rows)

    epoch_s, epoch_rate = [], []
    for epoch in range(args.epochs):
        order = torch.from_numpy(np.random.default_rng([args.seed, epoch, rank]).permutation(per_rank))
        xe, ye = xs[order].contiguous(), ys[order].contiguous()  # untimed: data preparation
        model.train()
        barrier(p)
        t0 = time.perf_counter()
        train_loss = train_epoch(model, opt, loss_fn, xe, ye, args.batch_per_proc)
        barrier(p)
        dt = time.perf_counter() - t0
        epoch_s.append(dt)
        epoch_rate.append(per_rank * p / dt)
        if rank == 0:
            plain.eval()
            val = f"  val_accuracy {accuracy(plain, xv, yv):.4f}" if len(xv) else ""
            print(f"epoch {epoch + 1}/{args.epochs}  {dt:.3f} s  {epoch_rate[-1] / 1e3:.1f}k samples/s  "
                  f"train_loss {train_loss:.4f}{val}", flush=True)

    if rank == 0:
        xt, yt = to_tensors(*load_split(args.data_dir, "t10k"), slice(None))
        plain.eval()
        result = {
            "framework": "pytorch", "torch": torch.__version__, "blas": blas, "procs": p,
            "backend": "gloo" if p > 1 else None, "threads_per_proc": args.threads,
            "epochs": args.epochs, "batch_per_proc": args.batch_per_proc, "global_batch": global_batch,
            "lr": lr, "train_rows": per_rank * p,
            "steps": -(-per_rank // args.batch_per_proc) * args.epochs,  # per process, short last batch included
            "samples_per_s": per_rank * p * args.epochs / sum(epoch_s),
            "epoch_samples_per_s": epoch_rate, "train_seconds": sum(epoch_s),
            "test_accuracy": accuracy(plain, xt, yt),
        }
        line = json.dumps(result)
        print(line, flush=True)
        if args.json_out:
            with open(args.json_out, "w") as f:
                f.write(line + "\n")
    if p > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    args = parse_args()
    if args.procs == 1:
        worker(0, args, 0)
    else:
        mp.spawn(worker, args=(args, free_port()), nprocs=args.procs, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
