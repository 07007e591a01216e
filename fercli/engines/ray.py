"""Ray Data under every command run with --engine ray (predict-dir, predict-video, clean):
`cluster` joins or starts the cluster, `map_files` runs a pool of actors over the files and
returns their batches in the files' order, `regroup` cuts them again into the chunks the
local engine would cut. What the actors do is the caller's: fercli.predict.ray (predicting)
and fercli.clean.ray (decoding and hashing) hold them.

An actor's arguments (a model's bytes among them) go into the object store once; a file an
actor cannot read must become a row with its reason, as with the local engine (an exception
inside a map step would abort the whole job). A lost actor is restarted and its batches run
again (ACTOR_RESTARTS). The files are read where the actors run: on a cluster of several
machines they must be at the same path on every node (a shared filesystem).
"""

import logging
import socket
import warnings
from contextlib import contextmanager

import numpy as np

from fercli.errors import FercliError
from fercli.progress import settings
from fercli.util import first_line

EXTRA = "pip install 'fercli[ray]'"


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise FercliError(
            f"--engine ray needs Ray Data, which is not installed here: {EXTRA}."
        ) from None
    return ray


def refuse_local_sizes(hint: str, **sizes) -> None:
    """--workers and --threads size this machine's pool, which --engine ray does not use: say
    so rather than silently ignore them. sizes: option name -> value (None: not given)."""
    given = ["--" + name.replace("_", "-") for name, value in sizes.items() if value is not None]
    if given:
        raise FercliError(
            f"{' and '.join(given)} size{'s' if len(given) == 1 else ''} the local engine; "
            f"with --engine ray the actors do the work: {hint}."
        )


def actor_count(actors: int | None, threads_per_actor: int = 1, gpus_per_actor: float = 0) -> int:
    """--actors, or as many as the cluster's CPUs (and GPUs, for CUDA actors) hold."""
    if actors is not None:
        return actors
    resources = import_ray().cluster_resources()
    actors = max(1, int(resources.get("CPU", 1)) // threads_per_actor)
    if gpus_per_actor:
        actors = max(1, min(actors, int(resources.get("GPU", 0) // gpus_per_actor)))
    return actors


@contextmanager
def cluster(address: str | None):
    """Joined to the Ray cluster at `address` (None: a new local one) for the block, and left
    after it; a cluster this process had already joined is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise FercliError(
            f"cannot reach {where} ({first_line(str(exc))}): start one with `ray start --head` "
            "and pass its address with --ray-address, or leave --ray-address out for a local one."
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """A host:port that answers, checked in seconds (ray.init waits much longer)."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise FercliError(
            f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)."
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise FercliError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start one with "
            "`ray start --head` there, or leave --ray-address out for a local one."
        ) from None


def map_files(
    files: list[str],
    actor_class,
    constructor_kwargs: dict,
    *,
    batch_size: int,
    actors: int | None,
    threads_per_actor: int = 1,
    gpus_per_actor: float = 0,
    key: str = "path",
):
    """The batches (dicts of numpy columns, "index" among them) that a pool of `actor_class`
    actors returns for `files`, in the files' order: the Ray Data part of every command run
    with --engine ray. `actor_class(**constructor_kwargs)` is made once per actor and called
    with {"index", key} batches (key: "path", or what the items are); a file it cannot read
    must become a row, not an exception (one would abort the whole job). Runs on the cluster
    joined with `cluster()`."""
    ray = import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    if not files:
        return

    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in the files' order
    context.enable_progress_bars = False  # fercli's own bar counts the rows
    if not settings["verbose"]:  # Ray Data's plan and timing lines, with -v only
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    actors = actor_count(actors, threads_per_actor, gpus_per_actor)
    dataset = ray.data.from_items([{"index": i, key: f} for i, f in enumerate(files)])
    # The arguments (the model's bytes among them) go into the object store once, held here
    # for the run, so that an actor Ray restarts after a crash reads them again.
    shipped = ray.put(constructor_kwargs)
    options = dict(
        fn_constructor_kwargs={"actor_class": actor_class, "shipped": [shipped]},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor,  # Ray's resources by name: CPUs, and GPUs for CUDA
        **({"num_gpus": gpus_per_actor} if gpus_per_actor else {}),
    )
    # A lost actor (a crash, the out-of-memory killer, a lost node) is restarted and its
    # batches run again: Ray Data's defaults, bounded (an actor that dies on every try
    # fails the run instead of retrying for ever). Ray 2.60 deprecates passing them so,
    # due to go in 2.64 with no other way yet; the `ray` extra stays below 2.61.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        mapped = dataset.map_batches(
            _Shipped, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS, **options
        )
    expected = 0
    for batch in mapped.iter_batches(batch_format="numpy"):
        index = np.asarray(batch["index"])
        if len(index) and (index[0] != expected or np.any(np.diff(index) != 1)):
            raise RuntimeError("Ray Data returned the rows out of order")
        expected += len(index)
        yield batch
    if expected != len(files):
        raise RuntimeError(f"Ray Data returned {expected} rows of {len(files)}")


ACTOR_RESTARTS = 3  # times Ray restarts a lost actor, and retries a batch it was running


class _Shipped:
    """`actor_class(**kwargs)`, its kwargs read from the object store (see map_files): passed
    by reference inside a list, they are no constructor argument of Ray's, which would log
    that a restarted actor may find them gone."""

    def __init__(self, actor_class, shipped):
        import ray

        self.inner = actor_class(**ray.get(shipped[0]))

    def __call__(self, batch):
        return self.inner(batch)


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def regroup(batches, sizes: list[int]):
    """The actors' batches (dicts of columns) cut again into parts of `sizes` rows."""
    pending: dict[str, list] = {}
    held = 0
    for size in sizes:
        while held < size:
            batch = next(batches, None)
            if batch is None:
                raise RuntimeError(f"Ray Data returned fewer rows than {sum(sizes)}")
            for key, column in batch.items():
                pending.setdefault(key, []).append(np.asarray(column))
            held += len(batch["index"])
        joined = {key: np.concatenate(parts) for key, parts in pending.items()}
        yield {key: column[:size] for key, column in joined.items()}
        pending = {key: [column[size:]] for key, column in joined.items()}
        held -= size
    if held or next(batches, None) is not None:  # also runs map_files' count check
        raise RuntimeError(f"Ray Data returned more rows than {sum(sizes)}")


TASK_RETRIES = 3  # times Ray runs a task again whose worker was lost (not on an exception)
TASKS_PER_CPU = 4  # groups of items per CPU of the cluster: few enough to be worth a task


def run_tasks(task, items: list, *, tasks: int | None = None) -> list:
    """`[task(item) for item in items]`, in items order, computed by Ray tasks on the
    cluster joined with `cluster()`: `task` (a picklable callable, its data with it) goes
    into the object store once, and each of `tasks` contiguous groups of the items
    (default: TASKS_PER_CPU per CPU of the cluster, at most one per item) is one remote task
    that reads it and returns its results. A task that raises makes this raise (the first
    failure, Ray's RayTaskError, which is also the original exception's class), never a
    partial list; a lost worker's task is run again (TASK_RETRIES)."""
    ray = import_ray()
    items = list(items)
    if not items:
        return []
    if tasks is None:
        tasks = TASKS_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))
    tasks = max(1, min(tasks, len(items)))
    bounds = np.linspace(0, len(items), tasks + 1).round().astype(int).tolist()
    shipped = ray.put(task)  # once for every task, held here until they are done
    remote = _remote_group(ray)
    refs = [remote.remote(shipped, items[a:b]) for a, b in zip(bounds, bounds[1:])]
    try:
        groups = ray.get(refs)
    except BaseException:
        for ref in refs:  # the others are of no use: stop them rather than let them run
            ray.cancel(ref, force=False)
        raise
    results = [result for group in groups for result in group]
    if len(results) != len(items):
        raise RuntimeError(f"Ray tasks returned {len(results)} results for {len(items)} items")
    return results


def _run_group(task, items):
    return [task(item) for item in items]


_REMOTE = {}


def _remote_group(ray):
    """_run_group as a Ray remote function (one CPU), made once per process."""
    if "group" not in _REMOTE:
        _REMOTE["group"] = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_group)
    return _REMOTE["group"]
