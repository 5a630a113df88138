"""Where trials run: in this process, or as Ray tasks (local by default, or a cluster).

Every search in :mod:`bitmod.compiler.search` hands its independent work (one candidate
format's sensitivity table, one batch of search points, one perf-model sweep) to an engine's
:meth:`~SerialEngine.map`, in fixed batches, and consumes the results in submission order,
so the same seed makes the same choices whichever engine ran them. Trial functions fix their
own torch thread count (``threads``), so a number does not depend on how many threads the
process that computed it had.

:class:`RayEngine` starts a local Ray (``ray.init()``, no setup) unless given the
``address`` of a running cluster (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others, then ``--address HEAD:6379`` or ``auto``); a trial asks
for ``num_cpus`` CPUs and ``num_gpus`` GPUs (a GPU trial runs its model on CUDA). Shared
inputs (model weights, calibration statistics) go to the object store once (:meth:`put`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["Engine", "RayEngine", "SerialEngine", "make_engine"]

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """Runs ``fn(shared, item)`` for every item, results in item order."""

    name: str

    def put(self, value: Any) -> Any: ...

    def map(
        self,
        fn: Callable[[Any, T], R],
        shared: Any,
        items: Sequence[T],
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> list[R]: ...


class SerialEngine:
    """Trials one after the other in this process."""

    name = "serial"

    def put(self, value: Any) -> Any:
        return value

    def map(
        self,
        fn: Callable[[Any, T], R],
        shared: Any,
        items: Sequence[T],
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> list[R]:
        del num_cpus, num_gpus  # one process: it has what it has
        return [fn(shared, item) for item in items]


class RayEngine:
    """Trials as Ray tasks; ``address`` None starts (or reuses) a local Ray."""

    name = "ray"

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, quiet: bool = True
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("the Ray engine needs ray: pip install -e '.[search]'") from None
        self._ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": not quiet,
                "configure_logging": not quiet,
            }
            if address is not None:
                options["address"] = address
            elif num_cpus is not None:
                options["num_cpus"] = num_cpus
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ValueError(f"cannot start {where}: {error}") from None
        self._remote: dict[tuple[Callable[..., Any], float, float], Any] = {}

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def map(
        self,
        fn: Callable[[Any, T], R],
        shared: Any,
        items: Sequence[T],
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> list[R]:
        key = (fn, num_cpus, num_gpus)
        if key not in self._remote:
            self._remote[key] = self._ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(fn)
        remote = self._remote[key]
        return self._ray.get([remote.remote(shared, item) for item in items])

    def shutdown(self) -> None:
        self._ray.shutdown()


def make_engine(name: str, address: str | None = None, num_cpus: int | None = None) -> Engine:
    """``serial`` or ``ray`` (``address``: a cluster to join; ``num_cpus``: local Ray size)."""
    if name == "serial":
        if address is not None:
            raise ValueError("--address needs the ray engine")
        return SerialEngine()
    if name == "ray":
        return RayEngine(address, num_cpus)
    raise ValueError(f"unknown engine {name!r}; engines: serial, ray")
