"""Asynchronous DiLoCo with pccl: the outer all-reduce overlaps the next round's inner steps.

Every peer (a process) trains a full copy of a small MLP. The outer parameters and the outer
(Nesterov SGD) momentum are the pccl shared state, identical on every peer. The rounds are a
``pccl.Loop`` (sync first, the work, vote last). One round:

    A  sync_shared_state (the loop): the peers that already hold the state use SEND_ONLY (they
       must agree bit for bit: a peer whose state differed would be removed), a peer that has
       never synced (one that just joined) uses RECEIVE_ONLY (``first_strategy``) and is brought
       up to date (and starts its local model from the outer parameters)
    B  loop.all_reduce_async(pseudo-gradient of the PREVIOUS round)  <- runs in the background
    C  inner steps (AdamW on local data)                             <- while this computes
    D  this round's pseudo-gradient = local parameters at the start of the round minus now
       (the progress of this round; it is sent in the next round)
    E  wait for B (run again after a lost peer); outer Nesterov step with the previous round's
       average pseudo-gradient (applied one round late); then the local model is re-based onto
       the new outer parameters, keeping this round's progress: local = outer - this round's
       pseudo-gradient
    F  membership vote (the loop): are_peers_pending() -> update_topology() (nothing is in
       flight here: update_topology() refuses to run while an all-reduce is)

The all-reduce carries [w * pseudo-gradient, w] with SUM: a peer with nothing to send (the
first round, or a peer that joined in this round) sends w = 0 and does not dilute the mean.

The launcher (the default mode of this script) runs a master and two peers, and starts a third
peer after round ``--join-after``: it connects, is admitted by the others' vote, catches up
with RECEIVE_ONLY and trains along. At the end the launcher checks that all peers hold the same
shared state (sha256).

    python examples/python/async_diloco.py                  # 2 peers + 1 joiner
    python examples/python/async_diloco.py --peers 3 --no-join
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import List

import pccl
from launch_util import wait_for_go

IN_DIM, HIDDEN, OUT_DIM = 32, 256, 8
OUTER_LR, OUTER_MOMENTUM = 0.7, 0.9


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


def peer(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)

    def say(msg: str) -> None:
        print(msg, flush=True)  # the launcher prefixes every line with [peer <rank>]

    torch.manual_seed(0)  # the same initial model everywhere
    model = torch.nn.Sequential(torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, HIDDEN),
                                torch.nn.Tanh(), torch.nn.Linear(HIDDEN, OUT_DIM))
    params = list(model.parameters())
    inner_opt = torch.optim.AdamW(params, lr=args.inner_lr, weight_decay=0.0)
    n = sum(p.numel() for p in params)
    with torch.no_grad():
        outer = torch.cat([p.reshape(-1) for p in params]).contiguous()
    momentum = torch.zeros_like(outer)
    state = pccl.SharedState([pccl.TensorInfo.from_torch(outer, "outer_params"),
                              pccl.TensorInfo.from_torch(momentum, "outer_momentum")])
    pending = torch.zeros(n + 1)    # this round's [w * pseudo-gradient, w], sent next round
    inflight = torch.zeros(n + 1)   # the buffer being all-reduced (in place)

    def flat_params() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([p.reshape(-1) for p in params])

    def load(flat: torch.Tensor) -> None:
        with torch.no_grad():
            off = 0
            for p in params:
                p.copy_(flat[off:off + p.numel()].view_as(p))
                off += p.numel()

    torch.manual_seed(1234)
    teacher = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 64), torch.nn.Tanh(), torch.nn.Linear(64, OUT_DIM))
    for p in teacher.parameters():
        p.requires_grad_(False)
    data_gen = torch.Generator().manual_seed(20_000 + args.rank)
    x_eval = torch.randn(512, IN_DIM, generator=torch.Generator().manual_seed(99))
    y_eval = teacher(x_eval)

    names = [name for name, _ in model.named_parameters()]

    def outer_eval_loss() -> float:
        views, off = {}, 0
        for name, p in zip(names, params):
            views[name] = outer[off:off + p.numel()].view_as(p)
            off += p.numel()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(torch.func.functional_call(model, views, (x_eval,)), y_eval).item()

    comm = pccl.Communicator(args.master, peer_group=0)
    if args.wait_for_go and not wait_for_go():  # the launcher times our entry into the run
        return 0
    comm.connect(n_attempts=10)  # a joiner blocks here until the running peers admit it
    if args.initial_world:
        admit_until(comm, args.initial_world)
    say(f"connected, world {comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)}")

    parity_ok = True
    eval_losses: List[float] = []
    waits: List[float] = []
    t_start = time.monotonic()
    # The very first sync of the run elects one state (ENFORCE_POPULAR); a joiner catches up
    # (RECEIVE_ONLY); afterwards everyone already agrees (SEND_ONLY).
    first_strategy = (pccl.SharedStateSyncStrategy.ENFORCE_POPULAR if args.initial_world
                      else pccl.SharedStateSyncStrategy.RECEIVE_ONLY)
    loop = pccl.Loop(comm, state, max_steps=args.rounds + 1, strategy=pccl.SharedStateSyncStrategy.SEND_ONLY,
                     first_strategy=first_strategy, log=lambda m: say(f"round {loop.step}: {m}"))
    for r in loop:
        # A: the shared state was synced by the loop
        sync = loop.sync_info
        if r == loop.first_step:
            if not args.initial_world:
                say(f"JOINED at round {r}: received {sync.rx_bytes} B of shared state with {first_strategy.name} "
                    f"(the others sent it with SEND_ONLY)")
                if sync.rx_bytes == 0:
                    say("ERROR: nothing was received: there was no run to join (it had ended?)")
                    return 1
            load(outer)  # start from the (received) outer parameters
        elif sync.rx_bytes != 0:
            parity_ok = False
            say(f"round {r}: PARITY VIOLATION: received {sync.rx_bytes} B")

        # B: the previous round's pseudo-gradient goes out in the background
        inflight.copy_(pending)
        handle = loop.all_reduce_async(inflight, op=pccl.ReduceOp.SUM, tag=0)

        # C: inner steps, overlapping the all-reduce (its I/O runs on pccl's threads)
        eval_loss = outer_eval_loss()  # of the outer parameters: the same on every peer
        eval_losses.append(eval_loss)
        start = flat_params()
        for _ in range(args.inner_steps):
            x = torch.randn(args.batch, IN_DIM, generator=data_gen)
            loss = torch.nn.functional.mse_loss(model(x), teacher(x))
            loss.backward()
            inner_opt.step()
            inner_opt.zero_grad()

        # D: this round's pseudo-gradient (its progress), reduced in the next round
        pending[:n].copy_(start - flat_params())
        pending[n] = 1.0

        # E: wait for the previous round's average (the loop runs it again if a peer was lost:
        # the in-place input was restored); apply it, one round late
        t_wait = time.monotonic()
        info = handle.wait()
        waited = time.monotonic() - t_wait
        waits.append(waited)
        total_w = float(inflight[n])
        if total_w > 0:
            with torch.no_grad():
                g = inflight[:n] / total_w
                momentum.mul_(OUTER_MOMENTUM).add_(g)
                outer.sub_(OUTER_LR * (g + OUTER_MOMENTUM * momentum))
        load(outer - pending[:n])  # re-base: the new outer parameters plus this round's progress
        applied = (f"applied the mean of {total_w:.0f} pseudo-gradients of round {r - 1}" if total_w > 0
                   else "nothing to apply yet")
        say(f"round {r:2d} | world {info.local_world_size} | eval loss (outer params) {eval_loss:.5f} | "
            f"{applied} | waited {waited * 1e3:.1f} ms for that all-reduce after the inner steps")
        # F: the membership vote (the loop)
    if loop.sync_info.rx_bytes != 0:  # the loop's last sync, after the last round
        parity_ok = False
        say(f"round {loop.step}: PARITY VIOLATION: received {loop.sync_info.rx_bytes} B")

    digest = hashlib.sha256(outer.numpy().tobytes() + momentum.numpy().tobytes()).hexdigest()[:16]
    if eval_losses:
        say(f"eval loss first {eval_losses[0]:.5f} last {eval_losses[-1]:.5f} ({len(eval_losses)} rounds, "
            f"{time.monotonic() - t_start:.1f} s, median wait for the overlapped all-reduce "
            f"{sorted(waits)[len(waits) // 2] * 1e3:.1f} ms)")
    if parity_ok:
        say("bit-parity ok: every SEND_ONLY sync found all peers identical (0 bytes received)")
    say(f"FINAL round {state.revision} state sha256 {digest}")
    comm.close()
    return 0 if parity_ok else 1


def launch(args: argparse.Namespace) -> int:
    from launch_util import Child, log, run_launcher, start_master, wait_all, wait_ready

    master = start_master()
    me = os.path.abspath(__file__)
    common = ["--master", f"127.0.0.1:{master.port}", "--rounds", str(args.rounds), "--inner-steps",
              str(args.inner_steps), "--batch", str(args.batch), "--inner-lr", str(args.inner_lr)]

    def body(children: List[Child]) -> bool:
        # Everyone is started now (importing torch takes seconds on a busy machine); the initial
        # peers are released together, the joiner after round --join-after.
        for r in range(args.peers):
            children.append(Child(f"peer {r}", me, common + ["--peer", "--rank", str(r), "--initial-world",
                                                             str(args.peers), "--wait-for-go"], stdin=True))
        if not args.no_join:
            children.append(Child(f"peer {args.peers}", me, common + ["--peer", "--rank", str(args.peers),
                                                                      "--wait-for-go"], stdin=True))
        wait_ready(children, 120)
        for c in children[:args.peers]:
            c.go()
        if not args.no_join:
            if children[0].wait_for(rf"round +{args.join_after} \|", 120) is None:
                log(f"peer 0 did not finish round {args.join_after}")
            children[-1].go()
            log(f"EVENT peer {args.peers} joins")
        ok = wait_all(children, args.timeout)
        digests = {}
        for c in children:
            m = c.find(r"FINAL round \d+ state sha256 (\w+)")
            digests[c.name] = m.group(1) if m else None
        same = len(set(digests.values())) == 1 and None not in digests.values()
        log(f"state digests {digests} -> {'identical' if same else 'DIFFERENT'}")
        return ok and same

    try:
        return run_launcher(body)
    finally:
        master.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=2, help="launcher: peers at the start")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--inner-steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inner-lr", type=float, default=1e-3)
    ap.add_argument("--join-after", type=int, default=4, help="launcher: a new peer joins after this round")
    ap.add_argument("--no-join", action="store_true")
    ap.add_argument("--timeout", type=float, default=100.0, help="launcher: seconds before the peers are killed")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--initial-world", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--wait-for-go", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        return peer(args)
    if not args.no_join and args.join_after >= args.rounds - 1:
        ap.error("--join-after must be at most --rounds - 2")
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
