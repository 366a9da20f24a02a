"""Weights for networks that are only timed: copied from one fixed random pool instead of drawn afresh.

Random initialisation dominates building a network to time it: 0.3-0.5 s of random number generation per arch of
the paper's space (more than timing it with the few repeats ``nas lut adapt`` uses), and ~15 s of a table build's
763 ops. A latency depends on the weights' shapes, not their values, as long as the values are ordinary floats (no
denormals, NaN or inf from uninitialised memory). Inside ``pooled_init()`` every random ``torch.nn.init`` fill
(kaiming, xavier, normal, trunc_normal, uniform: what ``torch.nn`` layers and this project's modules call) and every
``Tensor.uniform_``/``normal_`` copies values from a pool of uniform numbers, rescaled to the range, or the
standard deviation, it would have drawn: the same magnitudes as a real initialisation, at the cost of a copy.
Constant fills (zeros, ones) and buffers are left as they are. Only timing code uses it; models that are trained
or exported are initialised normally.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_POOL_SIZE = 1 << 20      # 4 MiB of float32, repeated over larger tensors
_OFFSET_STEP = 7_919      # a prime: consecutive fills start far apart and do not meet for 2**20 fills
_pool: torch.Tensor | None = None
_fills = 0


def _pool_values() -> torch.Tensor:
    """U(-1, 1) twice over (so that any window of the pool's size is one slice), the same numbers in every process
    (a fixed seed, its own generator: the global RNG is untouched)."""
    global _pool
    if _pool is None:
        values = torch.rand(_POOL_SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
        _pool = torch.cat([values, values])
    return _pool


def _fill(tensor: torch.Tensor, centre: float, half_width: float) -> torch.Tensor:
    """Each fill starts at another place of the pool: two tensors of one shape never hold the same values. (They
    did once, and the ONNX exporter merged such tensors into one initializer, which ONNX Runtime then could not
    fold into its int8 kernels: the int8 ops were timed 2-4x slower than the model a user exports.)"""
    global _fills
    pool = _pool_values()
    offset = (_fills * _OFFSET_STEP) % _POOL_SIZE
    _fills += 1
    flat = tensor.view(-1)
    with torch.no_grad():
        for start in range(0, flat.numel(), _POOL_SIZE):
            chunk = flat[start:start + _POOL_SIZE]
            chunk.copy_(pool[offset:offset + chunk.numel()]).mul_(half_width).add_(centre)
    return tensor


def _uniform(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, **_: Any) -> torch.Tensor:
    return _fill(tensor, (a + b) / 2, (b - a) / 2)


def _normal(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, **_: Any) -> torch.Tensor:
    return _fill(tensor, mean, std * math.sqrt(3.0))    # a uniform of the same mean and standard deviation


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    fan_in = tensor.shape[1] * receptive if tensor.dim() > 1 else tensor.shape[0]
    return fan_in, tensor.shape[0] * receptive


def _init_std(name: str, tensor: torch.Tensor, a: dict[str, Any]) -> float | None:
    """The standard deviation ``torch.nn.init.<name>`` would draw with (None: a function this does not replace)."""
    if name in ("normal_", "trunc_normal_"):
        return float(a["std"])
    if name in ("kaiming_uniform_", "kaiming_normal_"):
        fan_in, fan_out = _fans(tensor)
        fan = fan_in if a["mode"] == "fan_in" else fan_out
        return torch.nn.init.calculate_gain(a["nonlinearity"], a["a"]) / math.sqrt(fan)
    if name in ("xavier_uniform_", "xavier_normal_"):
        fan_in, fan_out = _fans(tensor)
        return float(a["gain"]) * math.sqrt(2.0 / (fan_in + fan_out))
    return None


def _pooled_init_call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A ``torch.nn.init`` function's fill from the pool, with the spread it would have drawn (``uniform_``: its
    range; the others: their standard deviation, as a uniform); any other init function (``zeros_``, ``ones_``,
    ``orthogonal_``...) runs as it is."""
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    tensor = a["tensor"]
    if not _poolable(tensor):
        return func(*args, **kwargs)
    if func.__name__ == "uniform_":
        return _uniform(tensor, a["a"], a["b"])
    std = _init_std(func.__name__, tensor, a)
    return func(*args, **kwargs) if std is None else _normal(tensor, float(a.get("mean", 0.0)), std)


_TENSOR_FILLS: dict[Callable[..., Any], Callable[..., torch.Tensor]] = {
    torch.Tensor.uniform_: _uniform, torch.Tensor.normal_: _normal}


def _poolable(tensor: Any) -> bool:
    return (isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.is_contiguous()
            and tensor.device.type == "cpu")


class _PooledInit(TorchFunctionMode):
    # torch.nn.init's functions are overridable themselves, and the mode is off while it handles one (so the
    # uniform_ inside kaiming_uniform_ is not seen): they are replaced whole, tensor methods one by one
    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _TENSOR_FILLS and args and _poolable(args[0]):
            return _TENSOR_FILLS[func](*args, **kwargs)
        if getattr(func, "__module__", None) == "torch.nn.init":   # (its tensor comes as a keyword argument)
            return _pooled_init_call(func, args, kwargs)
        return func(*args, **kwargs)


@contextmanager
def pooled_init() -> Iterator[None]:
    """Build modules inside this block to skip the cost of random initialisation (timing only)."""
    with _PooledInit():
        yield
