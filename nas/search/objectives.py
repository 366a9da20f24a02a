"""What a search maximises. An ``Objective`` (abstract base below) is a picklable callable ``arch -> float`` with
a ``name``, a one-line ``label`` that the output prints, and ``is_accuracy``; the searches never look further.

Each objective is one registered record (``ObjectiveEntry``, ``nas search --score NAME``): the function that
makes it from the space and its settings (imported when chosen), a line of help, and its settings dataclass,
declared beside its code with ``setting(...)`` fields (``nas.settings``) and made command-line options from
there. A new objective is one module plus one ``register_objective`` line below.

- ``capacity`` (``CapacityProxy``, the default, no training needed): sqrt(parameters in M x GMACs), the geometric
  mean of the two capacity counts, from the same per-op decomposition as the latency tables. It is a **proxy**,
  named as such everywhere it is reported. Why it: in every family of published figures in the shared SEEDS.md
  (EfficientFormer L1/L3/L7, EfficientFormerV2 S0-S2, EfficientViT M0-M5, MobileViTv2 widths) top-1 rises with
  both parameters and MACs; NAS-Bench-Suite-Zero (Krishnakumar et al., 2022) found parameter and FLOP counts
  competitive with zero-cost proxies; and it costs microseconds, where a zero-cost proxy on the extracted subnet
  costs a forward/backward pass per trial. Under a latency budget it rewards archs that buy the most capacity
  per millisecond. Held against stand-alone accuracy in this space by ``nas supernet rank`` (docs/benchmarks.md).
- ``supernet`` (``SupernetAccuracy``, ``--supernet CKPT --data DIR``): top-1 of the subnet extracted from a trained
  supernet (inherited weights, BatchNorm recalibrated) on a validation split, as in EfficientFormer's slimming.
- ``naswot`` and the other zero-cost proxies (``nas/search/zero_cost_objective.py``, ``--score naswot --data
  DIR``): a training-free score of the arch's randomly initialised network on a batch of real images.
"""
from __future__ import annotations

import abc
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas import registry
from nas.settings import PluginEntry, SettingOption, options_of, setting, settings_class, settings_or_defaults
from nas.space import Arch, SearchSpace
from supernet.config import EVAL_BN_IMAGES, EVAL_VAL_IMAGES


class Objective(abc.ABC):
    """What a search maximises. Picklable (it travels to Ray workers); ``name`` is recorded with a study and a
    resume must match it; ``label`` is the one line the output prints; ``is_accuracy`` says whether the value
    may be reported as accuracy."""

    name: str
    label: str
    is_accuracy: bool = False
    checkpoint: Path | None = None   # the supernet whose weights it scores (the exported winner inherits them)
    cheap: bool = False              # microseconds a call: evaluated in the driver even with --workers

    @abc.abstractmethod
    def __call__(self, arch: Arch) -> float:
        """The value of ``arch`` (higher is better)."""

    def details(self, arch: Arch) -> dict[str, float]:
        """Extra figures of ``arch`` recorded with its trial (default: none)."""
        return {}

    def flush(self) -> None:  # noqa: B027 - a hook whose default is to do nothing
        """Persist caches (called when a worker finishes an evaluation and when the search ends)."""

    def config(self) -> dict[str, Any]:
        """What a resumed study must match for its trials to be comparable (the name, and the inputs scored)."""
        return {"name": self.name}

    def at_precision(self, precision: str, recipe: dict[str, Any] | None) -> Objective:
        """The objective of a model that ships at ``precision`` (an int8 table's ``recipe`` with it). A proxy of
        the float network's structure is the same at every precision (default); an accuracy scores the model as
        it ships."""
        return self


class CapacityProxy(Objective):
    name = "capacity"
    label = "capacity proxy sqrt(params_M x GMACs) (a proxy, not accuracy)"
    is_accuracy = False
    cheap = True

    def __init__(self, space: SearchSpace):
        from nas.latency.counts import OpCounts

        self.counts = OpCounts(space)

    def __call__(self, arch: Arch) -> float:
        params, macs = self.counts.counts(arch)
        return math.sqrt(params / 1e6 * macs / 1e9)

    def details(self, arch: Arch) -> dict[str, float]:
        params, macs = self.counts.counts(arch)
        return {"params_m": params / 1e6, "gmacs": macs / 1e9}

    def flush(self) -> None:
        self.counts.save()


class SupernetAccuracy(Objective):
    """Top-1 (%) of ``arch``'s inherited weights on the validation split of ``data`` (``DATA/val``, the folder
    itself, or a built-in dataset's val split), BatchNorm recalibrated on its training split. The supernet is
    loaded once per process."""

    name = "supernet_top1"
    is_accuracy = True

    def __init__(self, checkpoint: str | Path, data: str | Path, val_images: int = EVAL_VAL_IMAGES,
                 bn_images: int = EVAL_BN_IMAGES):
        from nas.data import describe

        self.checkpoint, self.data = Path(checkpoint), data
        self.val_images, self.bn_images = val_images, bn_images
        if (val_images, bn_images) != (EVAL_VAL_IMAGES, EVAL_BN_IMAGES):   # a resume must not mix two recipes
            self.name = f"supernet_top1_val{val_images}_bn{bn_images}"
        self.label = f"top-1 (%) of inherited supernet weights on {describe(data, 'val')} ({val_images} images max)"
        self._net: Any = None
        self.int8_recipe: dict[str, Any] | None = None      # set by at_precision: scored after int8 quantisation

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_net": None}

    def config(self) -> dict[str, Any]:
        from nas.data import BUILTIN_PREFIX
        from supernet.checkpoint import file_digest

        assert self.checkpoint is not None
        data = str(self.data) if str(self.data).startswith(BUILTIN_PREFIX) else str(Path(self.data).resolve())
        config = {"name": self.name, "supernet_sha256": file_digest(self.checkpoint), "data": data}
        if self.int8_recipe is not None:     # another recipe scores other models: a resume must not mix them
            config["int8_op_types"] = ",".join(self.int8_recipe["op_types"])
        return config

    def at_precision(self, precision: str, recipe: dict[str, Any] | None) -> SupernetAccuracy:
        """Scored as the model ships: at int8, after post-training quantisation by ``recipe`` (the int8 table's,
        so accuracy and latency are of one graph; ``nas.search.int8_accuracy``); float precisions as they are."""
        if precision != "int8":
            return self
        assert recipe is not None
        scored = copy.copy(self)         # a new objective: the float one stays as it is (--precision auto has both)
        scored.int8_recipe = dict(recipe)
        scored.name = f"{self.name}_int8"
        scored.label = (f"{self.label}, after int8 post-training quantisation (ONNX Runtime, int8 "
                        f"{', '.join(recipe['op_types']) or 'nothing'}; ranges from training images)")
        return scored

    def __call__(self, arch: Arch) -> float:
        from supernet.checkpoint import load_supernet
        from supernet.evaluate import evaluate_subnet

        if self._net is None:
            assert self.checkpoint is not None
            self._net, _ = load_supernet(self.checkpoint)
        if self.int8_recipe is None:
            return evaluate_subnet(self._net, arch, self.data, self.val_images, self.bn_images)
        from nas.latency.quantize import Int8Recipe
        from nas.search.int8_accuracy import int8_top1

        scored = int8_top1(self._net.extract(arch), self.data, self._net.space.input_size,
                           Int8Recipe.from_dict(self.int8_recipe), self.val_images, self.bn_images)
        return float(scored["top1"])


@dataclass(frozen=True)
class SupernetSettings:
    """``--score supernet``: which supernet, on which data, with how many images per evaluation."""

    supernet: str | None = setting(None, "trained supernet: the objective becomes the inherited top-1 on --data's "
                                         "validation split (implies --score supernet)", value_type=str,
                                   metavar="CKPT")
    data: str | None = setting(None, "ImageFolder tree (DIR/val and DIR/train, or DIR itself), or builtin:objects "
                                     "/ builtin:digits (no download)", value_type=str, metavar="DIR")
    val_images: int = setting(EVAL_VAL_IMAGES, "validation images per evaluation (fewer is faster and coarser)",
                              minimum=1)
    bn_images: int = setting(EVAL_BN_IMAGES, "training images BatchNorm is recalibrated on per evaluation",
                             minimum=1)


def capacity_objective(space: SearchSpace, settings: object | None = None) -> Objective:
    return CapacityProxy(space)


def supernet_objective(space: SearchSpace, settings: SupernetSettings) -> Objective:
    """Inherited accuracy, with the checkpoint and the data checked now rather than in every trial."""
    from nas.errors import UsageError

    supernet, data = settings.supernet, settings.data
    if supernet is None and data is None:       # --score supernet, or only its --val-images / --bn-images
        raise UsageError("the supernet objective scores inherited accuracy: add --supernet CKPT --data DIR (without "
                         "them the objective is the capacity proxy)")
    if supernet is None or data is None:
        raise UsageError("--supernet and --data go together (inherited accuracy on DATA's validation split); "
                         "give both, or neither for the capacity proxy")
    from supernet.checkpoint import load_supernet

    net, _ = load_supernet(supernet)      # refuse a bad checkpoint now, not in every trial
    if net.space.name != space.name:
        raise UsageError(f"--supernet {supernet} is of space {net.space.name!r}, the search is over {space.name!r}")
    from nas.data import num_classes

    if num_classes(data) > net.num_classes:     # labels its head has no output for would all count as wrong
        raise UsageError(f"--data {data} has {num_classes(data)} classes, the supernet {supernet} was trained for "
                         f"{net.num_classes}; give the data it was trained on")
    objective = SupernetAccuracy(supernet, data, settings.val_images, settings.bn_images)
    objective._net = net
    return objective


class ObjectiveEntry(PluginEntry):
    """An objective's record; ``implementation`` is a function ``(space, settings) -> Objective``."""


OBJECTIVES: dict[str, ObjectiveEntry] = {}


def register_objective(name: str, entry: ObjectiveEntry) -> ObjectiveEntry:
    """Register an objective under ``name`` (``nas search --score name``); a name is registered once."""
    return registry.add(OBJECTIVES, name, entry, "objective")


register_objective("capacity", ObjectiveEntry("nas.search.objectives:capacity_objective",
                                              "sqrt(params_M x GMACs), a proxy that needs no training (default)"))
register_objective("supernet", ObjectiveEntry("nas.search.objectives:supernet_objective",
                                              "inherited top-1 of a trained supernet (--supernet CKPT --data DIR)",
                                              settings="nas.search.objectives:SupernetSettings"))
register_objective("naswot", ObjectiveEntry("nas.search.zero_cost_objective:naswot_objective",
                                            "NASWOT, a training-free score of the arch's network on --data's images",
                                            settings="nas.search.zero_cost_objective:ZeroCostSettings"))


def objective_settings_type(name: str) -> type | None:
    """The settings dataclass of objective ``name`` (a torch-free module), or None."""
    return settings_class(OBJECTIVES[name].settings)


def objective_options(name: str) -> list[SettingOption]:
    """Objective ``name``'s settings as command-line options, in the order its dataclass declares them."""
    return options_of(objective_settings_type(name), name, "objective")


def make_objective(space: SearchSpace, name: str = "capacity", settings: object | None = None) -> Objective:
    """Objective ``name`` over ``space`` with ``settings`` (its settings dataclass; None: its defaults)."""
    from nas import load_reference
    from nas.errors import UsageError

    if name not in OBJECTIVES:
        raise UsageError(f"--score {name!r}: accepted {', '.join(OBJECTIVES)}")
    settings = settings_or_defaults(settings, objective_settings_type(name), f"--score {name}")
    objective: Objective = load_reference(OBJECTIVES[name].implementation)(space, settings)
    return objective
