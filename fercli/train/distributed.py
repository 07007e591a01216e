"""Training in several processes under torchrun: PyTorch DDP, one model copy per process.

`torchrun --nproc-per-node N -m fercli train ...` sets WORLD_SIZE, RANK and LOCAL_RANK; with
WORLD_SIZE > 1 the run is distributed (gloo on the CPU, NCCL on CUDA). Every process holds the
whole (small) dataset; a DistributedSampler gives each its share of an epoch, sliced so that
each step's images together are the same global batch of --batch-size a single process would
take. Only rank 0 writes; decisions that end a run are made there and broadcast.
"""

import gc
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from fercli.errors import FercliError


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()
_started: list[bool] = []  # whether start() made the process group (stop() leaves it then)


def world_from_env() -> World:
    """The process's place in a torchrun job; a single process outside one."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return SINGLE
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return World(size, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), local_size)


def start(world: World, device: torch.device) -> torch.device:
    """Join the job's process group; returns this process's device (its own GPU on CUDA)."""
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if world.local_size > gpus:  # NCCL refuses two processes on one GPU
            raise FercliError(
                f"{world.local_size} processes on this machine but {gpus} CUDA GPU(s): "
                f"start one process per GPU (--nproc-per-node {gpus}) or train with --device cpu."
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # else a caller's own job: it keeps its process group
        _started.append(True)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return device


def stop(world: World) -> None:
    """Leave the process group that `start` made, after collecting what still refers to it
    (the DDP model's reducer, in reference cycles). Once, before train() ended with a barrier
    and this collection, a process that left while rank 0 was still writing aborted with
    "terminate called without an active exception"."""
    if _started and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
    _started.clear()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def threads_per_process(world: World) -> int:
    """The cores this process may use, shared evenly by the job's processes on this machine.
    (torchrun sets OMP_NUM_THREADS=1, which leaves cores idle when they outnumber processes.)"""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // world.local_size)


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DDP around the model. On CUDA batch norm is synchronized across processes; gloo has no
    SyncBatchNorm, so on the CPU each process normalizes with its share of the batch."""
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


POOL = 2**32 - 1  # stream_seed's key for what every process draws alike


def stream_seed(seed: int, epoch: int, key: int) -> int:
    """A random stream per (seed, epoch, process rank or POOL): a distributed run needs no
    random state in its checkpoint, so it resumes with any number of processes (and, with the
    same number, continues exactly)."""
    return int(np.random.SeedSequence([seed, epoch, key]).generate_state(1)[0])


def local_batches(pool_size: int, batch: int, world: World, seed: int, epoch: int):
    """This process's positions in an epoch's pool of `pool_size` images, as batches:
    [(positions, global batch size)], the same number of batches on every process.

    DistributedSampler shuffles the pool (the same permutation for any number of processes),
    pads it to a multiple of the process count and deals position p to process p % size;
    global batch k is positions [k*batch, (k+1)*batch) of that order, so it holds the same
    images whatever the number of processes. The padding joins the last batch; a last batch
    smaller than the number of processes joins the one before, so no process steps empty."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(pool_size), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    mine = torch.tensor(list(sampler), dtype=torch.int64)
    total = sampler.total_size
    steps = math.ceil(pool_size / batch)
    if steps > 1 and total - (steps - 1) * batch < world.size:
        steps -= 1
    edges = [k * batch for k in range(steps)] + [total]

    def local(position: int) -> int:  # first local index at or after a global position
        return max(0, -(-(position - world.rank) // world.size))

    return [(mine[local(start) : local(end)], end - start) for start, end in zip(edges, edges[1:])]


def shard(count: int, world: World) -> slice:
    """This process's contiguous share of `count` items (validation)."""
    return slice(count * world.rank // world.size, count * (world.rank + 1) // world.size)


def gather_rows(part: torch.Tensor, count: int, world: World, device) -> torch.Tensor:
    """Every process's shard (see `shard`) put back together, in order, on every process:
    each item exactly once."""
    if not world.distributed:
        return part
    width = math.ceil(count / world.size)
    padded = torch.zeros((width, *part.shape[1:]), dtype=part.dtype, device=device)
    padded[: len(part)] = part.to(device)
    pieces = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(pieces, padded)
    sizes = [count * (r + 1) // world.size - count * r // world.size for r in range(world.size)]
    return torch.cat([p[:n] for p, n in zip(pieces, sizes)]).cpu()


def sum_all(values: list[float], world: World, device) -> list[float]:
    """Element-wise sums over all processes (float64)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_main(flags: list[bool], world: World, device) -> list[bool]:
    """Rank 0's decisions on every process (stop early, out of time), so all leave together."""
    if not world.distributed:
        return flags
    tensor = torch.tensor(flags, dtype=torch.int32, device=device)
    dist.broadcast(tensor, 0)
    return [bool(v) for v in tensor.tolist()]


def object_from_main(value, world: World):
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def sync_buffers(model: torch.nn.Module, world: World) -> None:
    """Rank 0's buffers (batch-norm running statistics, per process on the CPU) everywhere, so
    validation and the checkpoint see one model."""
    if world.distributed:
        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer, 0)


@contextmanager
def main_first(world: World):
    """Rank 0 runs the block first (it decodes and caches the dataset), the others after it
    (they read the cache)."""
    if world.distributed and not world.main:
        dist.barrier()
    yield
    if world.distributed and world.main:
        dist.barrier()
