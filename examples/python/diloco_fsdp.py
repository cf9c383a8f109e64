"""DiLoCo across worker groups with pccl, FSDP2 inside each worker group.

A *worker group* is a torchrun-style group of 2 processes that trains one copy of the model
with ``torch.distributed.fsdp.fully_shard`` (gloo backend, CPU): every process holds half of
every parameter (its shard, the DTensor's ``.to_local()``). Worker groups run the inner steps
independently (no communication between groups) and meet every round for the outer step:

  * every process is one pccl peer with ``peer_group`` = its FSDP rank, so the peers that hold
    the same shard form one pccl peer group and reduce (and sync) together;
  * pseudo-gradient = outer parameters (the shard at the start of the round) minus the current
    local shard, all-reduced over the peer group (SUM of weight*delta and of the weight, so a
    group that did no inner steps in a round, e.g. one that just joined, contributes nothing);
  * the outer optimizer (Nesterov SGD, lr 0.7, momentum 0.9) updates the outer shard, which is
    copied into the FSDP-sharded parameters;
  * the outer parameters and momentum of the shard are the pccl shared state of the peer
    group, synchronised every round (a no-op moving 0 bytes while the peers agree; the whole
    shard for a peer that just joined).

One round, in every process (the rounds are a ``pccl.Loop``: sync first, vote last)::

    A  sync_shared_state(outer params + momentum of my shard)         (my peer group; the loop)
       -> copy the outer shard into the FSDP parameter shard
    B  is my worker group complete? (every rank of it admitted before this round)
    C  H inner steps (AdamW, FSDP all-gather / reduce-scatter over gloo)   if complete
    D  loop.all_reduce(pseudo-gradient of my shard): run again after a lost peer; alone in
       the peer group, the group's own pseudo-gradient
    E  outer Nesterov step on my shard
    F  membership vote: are_peers_pending() -> update_topology()      (global, all peers; the loop)

The launcher (the default mode of this script) runs a pccl master and worker groups A and B,
then demonstrates the two membership events pccl exists for:

  * kill: in round ``--kill-round`` group B enters the outer all-reduce, freezes itself (SIGSTOP,
    so that the kill deterministically lands *inside* the collective), and the launcher
    SIGKILLs both its processes once group A is inside the same all-reduce. Group A's
    all-reduce fails with ``PCCLError`` result ``RANK_CONNECTION_LOST`` (8) and the loop runs
    it again on the remaining peers; now alone in its peer groups, A gets ``TOO_FEW_PEERS`` (a
    group of one does not reduce, as in PCCL 1.0), applies its own pseudo-gradient, and training
    goes on.
  * join: after round ``--join-after`` a new group C joins (its processes were started with the
    others and wait for the launcher's signal, so that torch's import time does not delay the
    join); its pccl peers connect, are admitted when A's peers see ``are_peers_pending()`` and call
    ``update_topology()``, receive the shared state (outer shard + momentum) in their first
    sync, and C trains from the next round on.

At the end every process prints the digest of its shared state; the launcher checks that A's and
C's peers of each peer group hold bit-identical state.

    python examples/python/diloco_fsdp.py                       # A, B; kill B; join C
    python examples/python/diloco_fsdp.py --no-kill --no-join   # just A and B

Runs in well under a minute on 2 CPU cores (6 processes, a 2-layer MLP).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import signal
import sys
import time
from typing import List, Optional

import pccl
from launch_util import wait_for_go


FSDP_WORLD = 2              # processes per worker group
IN_DIM, HIDDEN, OUT_DIM = 32, 128, 8
OUTER_LR, OUTER_MOMENTUM = 0.7, 0.9


# =================================================================================== worker

def worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo on the loopback interface only
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    rank = args.rank

    def say(msg: str) -> None:
        print(msg, flush=True)  # the launcher prefixes every line with [<group><rank>]

    # ---- the worker group: a gloo process group over a TCPStore rendezvous on 127.0.0.1.
    # Rank 0 binds a free port and publishes it (the launcher passes it to rank 1).
    if rank == 0:
        store = dist.TCPStore("127.0.0.1", 0, FSDP_WORLD, is_master=True, wait_for_workers=False,
                              timeout=datetime.timedelta(seconds=120))
        say(f"STORE_PORT {store.port}")
    else:
        store = dist.TCPStore("127.0.0.1", args.store_port, FSDP_WORLD, is_master=False,
                              timeout=datetime.timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=FSDP_WORLD)

    # ---- the model, sharded with FSDP2. The same initialisation in every group (a joining
    # group gets the current outer parameters from the shared state anyway).
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, OUT_DIM))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    params = list(model.parameters())
    inner_opt = torch.optim.AdamW(params, lr=args.inner_lr, weight_decay=0.0)

    def local_shards() -> List[torch.Tensor]:
        return [p.to_local() for p in params]  # this process's shard of every parameter

    n_local = sum(t.numel() for t in local_shards())
    with torch.no_grad():
        outer = torch.cat([t.reshape(-1) for t in local_shards()]).contiguous()
    momentum = torch.zeros_like(outer)
    state = pccl.SharedState([pccl.TensorInfo.from_torch(outer, "outer_params"),
                              pccl.TensorInfo.from_torch(momentum, "outer_momentum")])
    delta = torch.zeros(n_local + 1)            # weight * pseudo-gradient, then the weight
    victim_recv = torch.empty(n_local + 1)      # the victim's out-of-place receive buffer

    def copy_outer_into_model() -> None:
        with torch.no_grad():
            off = 0
            for t in local_shards():
                t.copy_(outer[off:off + t.numel()].view_as(t))
                off += t.numel()

    # ---- data: a fixed random "teacher" labels Gaussian inputs. Each group (and rank) draws
    # its own inputs; the evaluation batch is the same everywhere.
    torch.manual_seed(1234)
    teacher = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 64), torch.nn.Tanh(), torch.nn.Linear(64, OUT_DIM))
    for p in teacher.parameters():
        p.requires_grad_(False)
    data_gen = torch.Generator().manual_seed(10_000 * (args.group_index + 1) + rank)
    eval_gen = torch.Generator().manual_seed(99)
    x_eval = torch.randn(FSDP_WORLD, 256, IN_DIM, generator=eval_gen)[rank]  # my half of the eval batch
    y_eval = teacher(x_eval)

    def group_mean(value: float) -> float:
        t = torch.tensor([value])
        dist.all_reduce(t)  # gloo, inside the worker group
        return float(t) / FSDP_WORLD

    # ---- pccl
    comm = pccl.Communicator(args.master, peer_group=rank)
    if args.wait_for_go and not wait_for_go():  # the launcher times our entry into the run
        return 0
    t_connect = time.monotonic()
    comm.connect(n_attempts=10)  # a joiner blocks here until the running peers admit it
    if args.initial_world:
        admit_until(comm, args.initial_world)
    say(f"pccl peer group {rank}: connected in {time.monotonic() - t_connect:.2f} s, "
        f"world {comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)}")

    def freeze_inside_all_reduce(r: int) -> None:
        """The victim's side of the kill demonstration. Enter the outer all-reduce, and once its
        start has reached the master (but the other worker groups have not started theirs: no data
        has arrived), stop this process with SIGSTOP. The launcher then SIGKILLs it while the
        survivors are inside the same all-reduce: the kill lands in the middle of a collective.
        Both ranks of the group freeze or neither does (agreed over gloo). Returns only if the
        others were first: then this all-reduce just completes (into victim_recv) and a later
        round tries again."""
        recv = victim_recv
        recv.fill_(float("nan"))
        handle = comm.all_reduce_async(delta, recv, op=pccl.ReduceOp.SUM, tag=0)
        time.sleep(0.05)  # the start message is on its way to the master (sent by pccl's control thread)
        untouched = torch.tensor([1.0 if bool(torch.isnan(recv).all()) else 0.0])
        dist.all_reduce(untouched, op=dist.ReduceOp.MIN)
        if float(untouched) == 1.0:
            say(f"FROZEN in round {r}: inside the outer all-reduce, waiting to be killed (SIGSTOP)")
            os.kill(os.getpid(), signal.SIGSTOP)
            os._exit(3)  # resumed (SIGCONT) instead of killed: just leave
        ok, status, _ = handle.wait()
        say(f"round {r}: the others started the all-reduce first; freezing next round instead (ok={ok})")
        if not ok:
            raise RuntimeError(f"the all-reduce failed: {handle.error}")

    joined_at: Optional[int] = None
    parity_ok = True
    freeze_attempts = 0
    eval_losses = []
    t0 = time.monotonic()
    # The rounds, in the loop's order: A sync, then the work (C-F), then the membership vote.
    loop = pccl.Loop(comm, state, max_steps=args.rounds + 1, log=lambda m: say(f"round {loop.step}: {m}"))
    for r in loop:
        # A: shared state, synced by the loop. The first sync of a peer keeps revision 0: the
        # initial peers elect one state, a joiner is behind and receives the group's state and
        # revision.
        sync = loop.sync_info
        if r == loop.first_step:
            joined_at = r
            store.set(f"joined/{rank}", str(r))
            if args.initial_world:
                say(f"round {r}: initial sync (rx {sync.rx_bytes} B, tx {sync.tx_bytes} B)")
            else:
                say(f"JOINED at round {r}: received {sync.rx_bytes} B of shared state "
                    f"(outer params + momentum of shard {rank})")
                if sync.rx_bytes == 0:
                    say("ERROR: nothing was received: there was no run to join (it had ended?)")
                    return 1
        elif sync.rx_bytes != 0:
            parity_ok = False
            say(f"round {r}: PARITY VIOLATION: the sync had to send this peer {sync.rx_bytes} B")
        copy_outer_into_model()

        # B: my worker group takes part in this round if every rank joined before it. All ranks
        # of the group decide alike: a rank that joined in an earlier round published that
        # before the membership vote that ended the previous round completed.
        ready = all(store.check([f"joined/{q}"]) and int(store.get(f"joined/{q}")) < r for q in range(FSDP_WORLD))
        doomed = args.freeze_at is not None and r >= args.freeze_at and freeze_attempts < 3

        # C: inner steps
        if ready and not doomed:
            eval_loss = group_mean(torch.nn.functional.mse_loss(model(x_eval), y_eval).item())
            eval_losses.append(eval_loss)
            losses = []
            t_inner = time.monotonic()
            for _ in range(args.inner_steps):
                x = torch.randn(args.batch, IN_DIM, generator=data_gen)
                loss = torch.nn.functional.mse_loss(model(x), teacher(x))
                loss.backward()
                inner_opt.step()
                inner_opt.zero_grad()
                losses.append(loss.item())
            if rank == 0:
                say(f"round {r:2d} | world {comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)} | "
                    f"eval loss (outer params) {eval_loss:.5f} | inner loss {losses[0]:.5f} -> {losses[-1]:.5f} "
                    f"({args.inner_steps} steps, {(time.monotonic() - t_inner) * 1e3:.0f} ms)")
        elif not ready and r == joined_at:
            say(f"round {r}: joined in this round; the group trains from the next round on")
        elif not ready:
            say(f"round {r}: worker group not complete yet (a rank is still being admitted), sitting this round out")

        # D: pseudo-gradient of my shard (weight 1 if this group trained this round)
        w = 1.0 if ready and not doomed else 0.0
        with torch.no_grad():
            delta[:n_local].copy_(outer)
            off = 0
            for t in local_shards():
                delta[off:off + t.numel()].sub_(t.reshape(-1))
                off += t.numel()
            delta[:n_local].mul_(w)
            delta[n_local] = w
        if doomed:
            freeze_attempts += 1
            freeze_inside_all_reduce(r)
            delta.copy_(victim_recv)  # not frozen: the others were first, the all-reduce completed
        else:
            # D: retried by the loop after a lost peer; alone in the peer group (the other worker
            # group was killed, or a staggered joiner's partner is not in yet) delta keeps this
            # group's own [w * delta, w] (a group of one does not reduce, as in PCCL 1.0)
            say(f"round {r}: outer all-reduce")
            loop.all_reduce(delta, op=pccl.ReduceOp.SUM, tag=0)
        # E: outer Nesterov SGD on my shard: g = mean pseudo-gradient of the groups that trained
        total_w = float(delta[n_local])
        if total_w > 0:
            with torch.no_grad():
                g = delta[:n_local] / total_w
                momentum.mul_(OUTER_MOMENTUM).add_(g)
                outer.sub_(OUTER_LR * (g + OUTER_MOMENTUM * momentum))
        # F: the membership vote runs here (the loop), admitting waiting peers
    if loop.sync_info.rx_bytes != 0:  # the loop's last sync, after the last round
        parity_ok = False
        say(f"round {loop.step}: PARITY VIOLATION: the sync had to send this peer {loop.sync_info.rx_bytes} B")

    digest = hashlib.sha256(outer.numpy().tobytes() + momentum.numpy().tobytes()).hexdigest()[:16]
    if rank == 0 and eval_losses:
        say(f"eval loss first {eval_losses[0]:.5f} last {eval_losses[-1]:.5f} "
            f"({len(eval_losses)} rounds trained, {time.monotonic() - t0:.1f} s)")
    if parity_ok:
        say(f"bit-parity ok: every sync after the first moved 0 bytes to this peer")
    say(f"FINAL round {state.revision} peer group {rank} joined at {joined_at} state sha256 {digest}")
    comm.close()
    dist.destroy_process_group()
    return 0 if parity_ok else 1


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


# =================================================================================== launcher

def launch(args: argparse.Namespace) -> int:
    from launch_util import Child, log, run_launcher, start_master, wait_all, wait_ready

    master = start_master()
    me = os.path.abspath(__file__)
    common = ["--master", f"127.0.0.1:{master.port}", "--rounds", str(args.rounds), "--inner-steps",
              str(args.inner_steps), "--batch", str(args.batch), "--inner-lr", str(args.inner_lr)]

    def start_groups(children: List[Child], groups: List[tuple]) -> List[List[Child]]:
        """Start worker groups [(name, extra args)]: every rank 0 first (it binds the group's
        rendezvous port and prints it), then the other ranks with that port."""
        started = []
        for index, (group, extra) in enumerate(groups):
            a = common + ["--worker", "--group", group, "--group-index", str(index), "--rank", "0",
                          "--wait-for-go"] + extra
            started.append([Child(f"{group}0", me, a, stdin=True)])
            children.append(started[-1][0])
        for index, (group, extra) in enumerate(groups):
            m = started[index][0].wait_for(r"STORE_PORT (\d+)", 120)
            if m is None:
                raise RuntimeError(f"{group}0 did not publish its rendezvous port")
            for rank in range(1, FSDP_WORLD):
                a = common + ["--worker", "--group", group, "--group-index", str(index), "--rank", str(rank),
                              "--wait-for-go", "--store-port", m.group(1)] + extra
                started[index].append(Child(f"{group}{rank}", me, a, stdin=True))
                children.append(started[index][-1])
        return started

    def body(children: List[Child]) -> bool:
        initial = ["--initial-world", str(2 * FSDP_WORLD)]
        groups = [("A", initial), ("B", initial + ([] if args.no_kill else ["--freeze-at", str(args.kill_round)]))]
        if not args.no_join:
            groups.append(("C", []))
        # All groups start now (importing torch and building the model takes seconds on a busy
        # machine); A and B are released together, C joins the run later.
        started = start_groups(children, groups)
        group_a, group_b = started[0], started[1]
        group_c = started[2] if not args.no_join else []
        wait_ready(children, 120)
        for c in group_a + group_b:
            c.go()

        if not args.no_kill:
            frozen = [c.wait_for(r"FROZEN in round (\d+)", 90) for c in group_b]
            if all(frozen):
                k = int(frozen[0].group(1))
                log(f"group B froze inside the outer all-reduce of round {k}")
                inside = [c.wait_for(rf"round {k}: outer all-reduce$", 30) for c in group_a]
                if not all(inside):
                    log("group A did not reach the all-reduce; killing B anyway")
                time.sleep(0.5)  # group A is now blocked in the all-reduce with B
            else:
                log("group B did not freeze; killing it wherever it is")
            for c in group_b:
                c.kill()
            log(f"EVENT killed worker group B (pids {', '.join(str(c.pid) for c in group_b)}) with SIGKILL")
        if not args.no_join:
            for c in group_a:
                if c.wait_for(rf"round {args.join_after}: outer all-reduce", 120) is None:
                    log(f"{c.name} did not reach round {args.join_after}")
            for i, c in enumerate(group_c):
                if i > 0 and args.stagger_join:
                    # C1 connects only after C0 was admitted and synced: the membership vote that
                    # admitted C0 is over, so C1 is admitted in a later round.
                    if group_c[0].wait_for(r"JOINED at round (\d+)", 60) is None:
                        log("C0 did not join")
                c.go()
                log(f"EVENT {c.name} of worker group C joins")
        ok = wait_all(group_a + group_c + (group_b if args.no_kill else []), args.timeout)
        for c in group_b:
            c.wait(10)
        # The state of every peer group must be bit-identical in every surviving group.
        finishers = group_a + group_c + (group_b if args.no_kill else [])
        for rank in range(FSDP_WORLD):
            digests = {}
            for c in finishers:
                if c.name.endswith(str(rank)):
                    m = c.find(r"FINAL round \d+ peer group \d+ joined at \d+ state sha256 (\w+)")
                    digests[c.name] = m.group(1) if m else None
            same = len(set(digests.values())) == 1 and None not in digests.values()
            log(f"peer group {rank}: state digests {digests} -> {'identical' if same else 'DIFFERENT'}")
            ok = ok and same
        return ok

    try:
        return run_launcher(body)
    finally:
        master.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10, help="outer rounds")
    ap.add_argument("--inner-steps", type=int, default=8, help="inner (local) steps per round")
    ap.add_argument("--batch", type=int, default=32, help="inner batch per process")
    ap.add_argument("--inner-lr", type=float, default=1e-3)
    ap.add_argument("--kill-round", type=int, default=3, help="launcher: round in which group B dies")
    ap.add_argument("--join-after", type=int, default=5, help="launcher: group C joins after this round")
    ap.add_argument("--no-kill", action="store_true", help="launcher: do not kill group B")
    ap.add_argument("--no-join", action="store_true", help="launcher: no group C")
    ap.add_argument("--timeout", type=float, default=110.0, help="launcher: seconds before everything is killed")
    ap.add_argument("--stagger-join", action="store_true",
                    help="launcher: C's second rank joins a round after its first (the group waits for it)")
    # worker mode (started by the launcher)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    ap.add_argument("--group", default="A", help=argparse.SUPPRESS)
    ap.add_argument("--group-index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--store-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--initial-world", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--freeze-at", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--wait-for-go", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.no_join and args.join_after >= args.rounds - 1:
        ap.error("--join-after must be at most --rounds - 2 (the new group needs rounds to train)")
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
