"""Many processes: torchrun's process group, rank helpers, and what every rank must agree on.

Scale-out is colocated SPMD, as SPIRAL's own runs are: every rank plays its share of a step's
games with its own actor, then trains a data-parallel learner (torch DDP or DeepSpeed). Launch
with ``torchrun``; a plain ``python -m spiral.launch`` run is a world of one, in which every
helper here returns its input unchanged.

Why an N-rank run is the same algorithm as a 1-rank run:

- games: the step's ``games_per_step`` matches are dealt exactly as one process deals them (the
  same game ids and seeds) and rank r plays the r-th contiguous slice, ``shard_range``;
- RAE (``spiral.learning.advantages.shared_advantages``): every rank all-gathers every rank's
  (game, player, return) triples in rank order, which is match order, and runs the same
  sequential EMA over them, so the baselines are identical on every rank and equal to those of
  one process that saw the same returns;
- loss: each rank normalises by the global number of sequences and the gradients are summed over
  ranks (``spiral.learning.ppo``), so an update equals one process's update on the union.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from spiral.records import Episode


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and shows the progress bar."""
        return self.rank == 0


ONE_PROCESS = Dist()  # a plain ``python -m spiral.launch`` run


def from_env(environ: dict[str, str] | None = None) -> Dist:
    """The rank layout torchrun exported (a world of one when it did not)."""
    env = os.environ if environ is None else environ
    values = {}
    for key, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = env.get(key, str(default))
        if not raw.isdigit():
            raise ValueError(f"environment variable {key}={raw!r} is not a non-negative integer")
        values[key] = int(raw)
    if not 0 <= values["RANK"] < max(values["WORLD_SIZE"], 1):
        raise ValueError(f"RANK={values['RANK']} is outside WORLD_SIZE={values['WORLD_SIZE']}")
    return Dist(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])


def setup(device: str = "auto", need_group: bool = False) -> Dist:
    """Join torchrun's process group: NCCL when training on GPUs, gloo on CPU.

    A world of one gets a process group only when ``need_group`` (DeepSpeed and the vLLM
    actor run inside one); it then listens on a free local port.
    """
    dist = from_env()
    if torch.distributed.is_initialized() or (dist.world_size == 1 and not need_group):
        return dist
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(dist.local_rank)
    backend = "nccl" if cuda else "gloo"
    if dist.world_size > 1:
        torch.distributed.init_process_group(backend)  # env:// from torchrun
        return dist
    store = torch.distributed.TCPStore("127.0.0.1", 0, 1, is_master=True)
    torch.distributed.init_process_group(backend, store=store, rank=0, world_size=1)
    # vLLM's external launcher and DeepSpeed read the rendezvous from the environment
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(store.port))
    return dist


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of the ``rank``-th of ``world_size`` contiguous slices of ``n`` items.

    Slice sizes differ by at most one; concatenating the slices in rank order gives 0..n-1.
    """
    return n * rank // world_size, n * (rank + 1) // world_size


def _active(dist: Dist) -> bool:
    return dist.world_size > 1 and torch.distributed.is_initialized()


def _comm_device() -> torch.device:
    """NCCL reduces tensors on the GPU, gloo on the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_objects(obj, dist: Dist) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not _active(dist):
        return [obj]
    out: list = [None] * dist.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def gather_to_main(obj, dist: Dist) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
    if not _active(dist):
        return [obj]
    out: list | None = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def all_reduce(values: list[float], dist: Dist, op: str = "sum") -> list[float]:
    """Element-wise sum (or max, or min) of a list of numbers over ranks, in float64."""
    if not _active(dist) or not values:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    reduce_op = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX,
                 "min": torch.distributed.ReduceOp.MIN}
    torch.distributed.all_reduce(tensor, op=reduce_op[op])
    return tensor.cpu().tolist()


def barrier(dist: Dist) -> None:
    if _active(dist):
        torch.distributed.barrier()


def gather_episodes(episodes: list[Episode], dist: Dist) -> list[Episode] | None:
    """All ranks' episodes in match order on rank 0 (metrics, transcripts); None elsewhere."""
    shards = gather_to_main(episodes, dist)
    return None if shards is None else [ep for shard in shards for ep in shard]
