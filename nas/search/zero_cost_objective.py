"""``nas search --score naswot --data DIR``: a training-free objective, NASWOT (Mellor et al., ICML 2021) of each
arch's randomly initialised network on one batch of real images (``nas.search.zero_cost``).

Why this one: held against stand-alone training in this space (``nas supernet rank``, docs/benchmarks.md) it
ranked archs best of the four zero-cost proxies (Kendall τ +0.64 to +0.72 on `tiny`, +0.53 on `tiny_hybrid`,
against the capacity proxy's +0.58 to +0.60 and +0.47), though never clear of the capacity proxy's interval: so
it is offered, not the default. It costs one forward pass per trial (tens of milliseconds on the tiny spaces,
about 7.6 s on the default space's 224x224 images on 2 cores), where the capacity proxy costs microseconds. The
network's initial weights come from a fixed seed, so the same arch always scores the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.search.objectives import Objective
from nas.search.zero_cost import PROXY_IMAGES
from nas.settings import setting
from nas.space import Arch, SearchSpace

PROXY = "naswot"


@dataclass(frozen=True)
class ZeroCostSettings:
    data: str | None = setting(None, "ImageFolder tree (DIR/val and DIR/train, or DIR itself), or builtin:objects "
                                     "/ builtin:digits (no download)", value_type=str, metavar="DIR")
    proxy_images: int = setting(PROXY_IMAGES, "--score naswot: training images the proxy sees, one batch", minimum=2,
                                maximum=4096)


class ZeroCostObjective(Objective):
    """A zero-cost proxy of ``arch``'s network (initialised from seed 0) on ``images`` training images of
    ``data`` (the same images for every arch), with the parameter and MAC counts as details."""

    is_accuracy = False

    def __init__(self, proxy: str, space: SearchSpace, data: str, images: int):
        from nas.data import describe
        from nas.latency.counts import OpCounts

        self.proxy, self.space, self.data, self.images = proxy, space, data, images
        self.name = proxy if images == PROXY_IMAGES else f"{proxy}_images{images}"
        self.label = f"{proxy} zero-cost proxy on {images} images of {describe(data, 'train')} (a proxy, not accuracy)"
        self.counts = OpCounts(space)
        self._batch: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_batch": None}     # each process reads its batch again (the same images)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "data": str(self.data)}

    def __call__(self, arch: Arch) -> float:
        from nas.data import num_classes
        from nas.search.zero_cost import proxy_batch, score

        if self._batch is None:
            self._batch = (*proxy_batch(self.data, self.space.input_size, self.images), num_classes(self.data))
        images, labels, classes = self._batch
        return score(self.proxy, arch, self.space, images, labels, classes)

    def details(self, arch: Arch) -> dict[str, float]:
        params, macs = self.counts.counts(arch)
        return {"params_m": params / 1e6, "gmacs": macs / 1e9}

    def flush(self) -> None:
        self.counts.save()


def naswot_objective(space: SearchSpace, settings: ZeroCostSettings) -> Objective:
    from nas.errors import UsageError

    if settings.data is None:
        raise UsageError("--score naswot scores each arch on real images: add --data DIR (or builtin:objects)")
    from nas.data import num_classes

    num_classes(settings.data)        # refuse unknown data now, not in the first trial
    return ZeroCostObjective(PROXY, space, settings.data, settings.proxy_images)
