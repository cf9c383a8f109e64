"""One rank of a torch.distributed run over backend="pccl" (or "gloo"), for test_torch_backend.py.

    python torch_backend_peer.py MODE --master HOST:PORT --rank R --world N [--backend pccl|gloo]
                                 [--init URL] [--steps K] [--hidden H]

MODE: ddp (DDP training, prints the parameters' hash), fsdp (FSDP2 fully_shard training, prints
the losses and the full parameters' hash), ops (every supported collective checked against its
definition), kill (an all-reduce loop; rank N-1 dies by SIGKILL in step 3, the survivors catch
DistBackendError, re-create the group on N-1 peers and go on). Output: one JSON line "RESULT {...}".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time

import torch
import torch.distributed as dist

import pccl.torch_backend  # noqa: F401 (registers backend "pccl" and pccl://)


def init(args, rank=None, world=None):
    rank = args.rank if rank is None else rank
    world = args.world if world is None else world
    if args.backend == "pccl":
        dist.init_process_group(backend="pccl", init_method=f"pccl://{args.master}", rank=rank, world_size=world)
    else:
        dist.init_process_group(backend="gloo", init_method=args.init, rank=rank, world_size=world)


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


HIDDEN = 64


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    h = HIDDEN
    return torch.nn.Sequential(torch.nn.Linear(32, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                               torch.nn.Linear(h, 8))


def batch(rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(16, 32, generator=g)
    return x, x[:, :8].sin() * 2


def ddp(args):
    from torch.nn.parallel import DistributedDataParallel

    init(args)
    model = DistributedDataParallel(mlp(seed=args.rank))  # different inits: DDP broadcasts rank 0's
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for step in range(args.steps):
        x, y = batch(args.rank, step)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out = {"hash": digest(model.parameters()), "losses": losses}
    dist.destroy_process_group()
    return out


def fsdp(args):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    init(args)
    mesh = init_device_mesh("cpu", (args.world,))
    model = mlp(seed=0)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses, times = [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        x, y = batch(args.rank, step % 4)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    full = [p.full_tensor() for p in model.parameters()]
    out = {"hash": digest(full), "losses": losses, "ms_per_step": 1000 * sorted(times)[len(times) // 2]}
    dist.destroy_process_group()
    return out


def ops(args):
    init(args)
    r, n = dist.get_rank(), dist.get_world_size()
    checks = {}
    t = torch.full((1000,), float(r + 1))
    for name, op, want in (("sum", dist.ReduceOp.SUM, n * (n + 1) / 2), ("avg", dist.ReduceOp.AVG, (n + 1) / 2),
                           ("min", dist.ReduceOp.MIN, 1.0), ("max", dist.ReduceOp.MAX, float(n)),
                           ("product", dist.ReduceOp.PRODUCT, float(torch.arange(1, n + 1).prod()))):
        x = t.clone()
        dist.all_reduce(x, op=op)
        checks[f"allreduce_{name}"] = bool(torch.all(x == want))
    b = torch.full((10,), float(r))
    dist.broadcast(b, src=1)
    checks["broadcast"] = bool(torch.all(b == 1.0))
    outs = [torch.empty(3) for _ in range(n)]
    dist.all_gather(outs, torch.full((3,), float(r)))
    checks["allgather"] = all(bool(torch.all(o == i)) for i, o in enumerate(outs))
    big = torch.empty(3 * n, dtype=torch.int64)
    work = dist.all_gather_into_tensor(big, torch.full((3,), r, dtype=torch.int64), async_op=True)
    fut_value = work.get_future().wait()
    checks["all_gather_into_tensor"] = big.tolist() == [i for i in range(n) for _ in range(3)] and fut_value is not None
    out = torch.empty(2)
    dist.reduce_scatter(out, [torch.full((2,), float(i * 10 + r)) for i in range(n)])
    checks["reduce_scatter"] = bool(torch.all(out == n * r * 10 + n * (n - 1) / 2))
    out = torch.empty(2)
    dist.reduce_scatter_tensor(out, torch.arange(2 * n, dtype=torch.float32), op=dist.ReduceOp.SUM)
    checks["reduce_scatter_tensor"] = out.tolist() == [float(n * (2 * r)), float(n * (2 * r + 1))]
    dist.barrier()
    try:
        dist.send(torch.zeros(1), dst=(r + 1) % n)
        checks["send_refused"] = False
    except NotImplementedError as e:
        checks["send_refused"] = "send" in str(e)
    dist.destroy_process_group()
    return {"checks": checks}


def kill(args):
    init(args)
    victim = args.world - 1
    x = torch.ones(8 << 20)
    results, recovered = [], None
    for step in range(8):
        if step == 3 and args.rank == victim:
            threading.Timer(0.002, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        y = x.clone()
        try:
            dist.all_reduce(y)
            results.append(float(y[0]))
        except dist.DistBackendError as e:
            # Recovery: re-create the group on the survivors (the victim had the last rank).
            recovered = {"step": step, "error": str(e)[:300], "restored": bool(torch.all(y == 1.0))}
            dist.destroy_process_group()
            init(args, world=args.world - 1)
            y = x.clone()
            dist.all_reduce(y)
            results.append(float(y[0]))
    dist.destroy_process_group()
    return {"results": results, "recovered": recovered}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["ddp", "fsdp", "ops", "kill"])
    p.add_argument("--master", required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--backend", default="pccl")
    p.add_argument("--init", default="")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64, help="width of the MLP's hidden layers (timing runs)")
    args = p.parse_args()
    global HIDDEN
    HIDDEN = args.hidden
    torch.set_num_threads(1)
    out = {"ddp": ddp, "fsdp": fsdp, "ops": ops, "kill": kill}[args.mode](args)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
