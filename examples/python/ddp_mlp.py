"""DDP-style data-parallel training of a small MLP over pccl.

Every peer (a process) holds the whole model and trains on its own synthetic data. The steps
are a ``pccl.Loop``, which runs each one in the order that lets peers join and leave at any step:

  1. the shared state (model parameters AND the optimizer state: Adam's ``exp_avg``,
     ``exp_avg_sq`` and ``step`` tensors) is synchronised, revision = step (the loop does it);
  2. forward/backward on the local batch;
  3. the gradients (flattened into one buffer, plus the loss) are averaged over all peers with
     ``loop.all_reduce(flat, op=AVG)`` on a torch tensor, in place; a peer lost in the middle
     of it aborts it on every survivor (with the input restored), and the loop runs it again on
     the remaining peers;
  4. ``optimizer.step()`` (Adam);
  5. membership: every peer votes ``are_peers_pending()``; if so all admit them
     (``update_topology()``) (the loop does it).

The peers start from *different* random initialisations: the first sync elects one and
copies it to the others (``rx_bytes > 0``). Afterwards every peer applies the same averaged
gradient to the same state, so every later sync (the next step's, and the loop's last one
after the final step) must move nothing: ``rx_bytes == 0`` on every peer is the bit-parity
check ("bit-parity ok").

Run it (a master and 3 peer processes, all started by this script)::

    python examples/python/ddp_mlp.py --launch 3 --steps 30

or start the pieces yourself::

    pccl-master --listen-address 127.0.0.1:48148 &
    python examples/python/ddp_mlp.py --master 127.0.0.1:48148 --rank 0 --world 2 &
    python examples/python/ddp_mlp.py --master 127.0.0.1:48148 --rank 1 --world 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import List

import torch

import pccl

IN_DIM, HIDDEN, OUT_DIM = 32, 64, 4


def say(msg: str) -> None:
    print(msg, flush=True)  # the launcher prefixes every line with "[peer <rank>]"


def admit_until(comm: pccl.Communicator, world: int, timeout: float = 60.0) -> None:
    """The PCCL admission loop: vote and admit until the run has ``world`` peers."""
    deadline = time.monotonic() + timeout
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not reach {world} peers within {timeout} s")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.02)


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.Tanh(),
                               torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh(),
                               torch.nn.Linear(HIDDEN, OUT_DIM))


def state_digest(tensors: List[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def peer(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    rank = args.rank
    # Different initial weights on every peer: the first shared-state sync makes them equal.
    model = make_model(seed=1000 + rank)
    params = [p for p in model.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr, foreach=False)
    # Create Adam's state now (zeros, step 0: what Adam itself would create on its first step),
    # so that the shared state can point at these tensors from the start. Adam updates all of
    # them in place, so the pointers stay valid.
    for p in params:
        opt.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.contiguous_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.contiguous_format)}
    infos = []
    shared_tensors: List[torch.Tensor] = []
    for name, p in model.named_parameters():
        st = opt.state[p]
        for key, t in ((f"model.{name}", p.data),
                       (f"adam.{name}.exp_avg", st["exp_avg"]),
                       (f"adam.{name}.exp_avg_sq", st["exp_avg_sq"]),
                       (f"adam.{name}.step", st["step"])):
            infos.append(pccl.TensorInfo.from_torch(t, key))
            shared_tensors.append(t)
    state = pccl.SharedState(infos)

    # Synthetic regression: a fixed random "teacher" MLP (the same on every peer) labels
    # Gaussian inputs; every peer draws its own inputs.
    teacher = make_model(seed=7)
    for p in teacher.parameters():
        p.requires_grad_(False)
    data_gen = torch.Generator().manual_seed(50_000 + rank)

    comm = pccl.Communicator(args.master, peer_group=0)
    comm.connect(n_attempts=10)
    admit_until(comm, args.world)
    say(f"connected, world size {comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)}")

    n_grad = sum(p.numel() for p in params)
    flat = torch.zeros(n_grad + 1, dtype=torch.float32)  # gradients + the loss

    losses = []
    parity_violations = 0
    later_syncs = 0

    def check_parity(what: str) -> None:
        """Every sync after the first must move nothing: all peers hold the same state."""
        nonlocal parity_violations, later_syncs
        later_syncs += 1
        sync = loop.sync_info
        if sync.rx_bytes != 0 or sync.tx_bytes != 0:
            parity_violations += 1
            say(f"{what}: PARITY VIOLATION: sync moved rx {sync.rx_bytes} B / tx {sync.tx_bytes} B")

    t0 = time.monotonic()
    loop = pccl.Loop(comm, state, max_steps=args.steps, log=lambda m: say(f"step {loop.step}: {m}"))
    for step in loop:  # the shared state is synced here (revision = step) ...
        if step == loop.first_step:  # revision 0: elect one initialisation
            say(f"initial sync: revision {state.revision}, received {loop.sync_info.rx_bytes} B, "
                f"sent {loop.sync_info.tx_bytes} B")
        else:
            check_parity(f"step {step}")

        x = torch.randn(args.batch, IN_DIM, generator=data_gen)
        y = teacher(x)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=False)
        loss.backward()

        # One buffer: every gradient, then the loss (so the average loss comes for free).
        off = 0
        for p in params:
            n = p.numel()
            flat[off:off + n].copy_(p.grad.reshape(-1))
            off += n
        flat[n_grad] = loss.detach()
        info = loop.all_reduce(flat, op=pccl.ReduceOp.AVG)
        off = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[off:off + n].view_as(p))
            off += n
        global_loss = float(flat[n_grad])
        losses.append(global_loss)

        opt.step()
        say(f"step {step:3d} | world {info.local_world_size} | loss {global_loss:.5f} | "
            f"all-reduce tx {info.tx_bytes} B | sync rx {loop.sync_info.rx_bytes} B")
        # ... and the membership vote runs here, at the end of the step.
    check_parity("final sync")  # the loop's last sync, after the last step

    elapsed = time.monotonic() - t0
    say(f"loss first {losses[0]:.5f} last {losses[-1]:.5f} ({args.steps} steps, {elapsed:.1f} s)")
    if parity_violations == 0:
        say(f"bit-parity ok: {later_syncs} syncs after the first moved 0 bytes")
    say(f"final revision {state.revision} state sha256 {state_digest(shared_tensors)}")
    comm.close()
    return 0 if parity_violations == 0 and losses[-1] < losses[0] else 1


def launch(args: argparse.Namespace) -> int:
    from launch_util import Child, log, run_launcher, start_master, wait_all

    master = start_master()

    def body(children: List[Child]) -> bool:
        for r in range(args.launch):
            children.append(Child(f"peer {r}", os.path.abspath(__file__),
                                  ["--master", f"127.0.0.1:{master.port}", "--rank", str(r), "--world",
                                   str(args.launch), "--steps", str(args.steps), "--batch", str(args.batch),
                                   "--lr", str(args.lr)]))
        ok = wait_all(children, args.timeout)
        digests = {c.name: c.find(r"state sha256 (\w+)") for c in children}
        values = {m.group(1) if m else None for m in digests.values()}
        if ok and len(values) == 1 and None not in values:
            log(f"all {args.launch} peers hold the same state (sha256 {values.pop()})")
        else:
            log(f"state digests differ or are missing: {digests}")
            ok = False
        return ok

    try:
        return run_launcher(body)
    finally:
        master.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launch", type=int, metavar="N", help="start a master and N peer processes of this script")
    ap.add_argument("--master", help="the master's ip:port (peer mode)")
    ap.add_argument("--rank", type=int, default=0, help="this peer's index (seeds its data and initial weights)")
    ap.add_argument("--world", type=int, default=2, help="wait until this many peers are in the run")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--timeout", type=float, default=100.0, help="launcher: seconds before the peers are killed")
    args = ap.parse_args()
    if args.launch:
        return launch(args)
    if not args.master:
        ap.error("give --launch N, or --master ADDRESS for a peer")
    return peer(args)


if __name__ == "__main__":
    sys.exit(main())
