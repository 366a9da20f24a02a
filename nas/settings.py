"""Settings of a plug-in (a search strategy, an objective) declared once, beside the code that reads them.

A plug-in's settings are a frozen dataclass whose fields are ``setting(default, help, ...)``. The command line
makes one option of each field (``options_of``), checks the value given (``SettingOption.check``) and builds the
dataclass; the run directory's name carries the values changed from their defaults (``settings_label``). A
settings module imports neither torch nor Optuna: the parser reads every plug-in's settings on every ``nas``
command (``tests/search/test_strategies.py`` holds this).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nas.errors import UsageError


@dataclass(frozen=True)
class PluginEntry:
    """A plug-in's record: what implements it (imported when chosen), a line of help, and its settings."""

    implementation: str            # "module:attribute", imported when chosen
    help: str                      # one line for ``--help``
    settings: str | None = None    # "module:Class" of its settings dataclass (None: it has none)


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple[Any, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None, value_type: type | None = None,
            metavar: str | None = None) -> Any:
    """A field of a plug-in's settings dataclass that is also a command-line option: ``--name-with-dashes``
    unless ``flag`` says otherwise, typed by its default (a bool is a switch) or by ``value_type`` where the
    default is None, checked against ``choices`` or [``minimum``, ``maximum``]. A setting whose default is None
    is not part of a run directory's name (a path or a name given by the user)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "minimum": minimum, "maximum": maximum,
                                                        "value_type": value_type, "metavar": metavar})


@dataclass(frozen=True)
class SettingOption:
    """One setting of one plug-in as the command line sees it."""

    kind: str           # what the plug-in is: "strategy", "objective"
    owner: str          # its registered name
    field: str
    flag: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    minimum: float | None
    maximum: float | None
    value_type: type
    metavar: str | None

    @property
    def dest(self) -> str:      # the argparse destination: plug-ins of a kind that declare a field share it
        return f"{self.kind}__{self.field}"

    def check(self, value: Any) -> Any:
        """``value`` if the setting accepts it, else a one-line refusal naming it and what is accepted."""
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{self.flag} {value!r}: accepted {', '.join(map(str, self.choices))}")
        low = self.minimum if self.minimum is not None else float("-inf")
        high = self.maximum if self.maximum is not None else float("inf")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            raise UsageError(f"{self.flag} {value}: accepted {_range(self.minimum, self.maximum)}")
        return value


def _range(low: float | None, high: float | None) -> str:
    if high is None:
        return f"a number >= {low:g}"
    return f"a number <= {high:g}" if low is None else f"a number in [{low:g}, {high:g}]"


def settings_class(reference: str | None) -> type | None:
    """The settings dataclass a plug-in's record names as ``"module:Class"`` (a torch-free module), or None."""
    if reference is None:
        return None
    from nas import load_reference

    found: type = load_reference(reference)
    return found


def settings_or_defaults(settings: object | None, cls: type | None, chooser: str) -> Any:
    """``settings`` if it is a ``cls``, ``cls()`` (the defaults) if it is None; a TypeError naming the plug-in
    (``chooser``, as ``--strategy slim``) otherwise."""
    if cls is None or settings is None:
        return cls() if cls is not None else None
    if not isinstance(settings, cls):
        raise TypeError(f"{chooser} takes {cls.__name__}, got {type(settings).__name__}")
    return settings


def options_of(cls: type | None, owner: str, kind: str) -> list[SettingOption]:
    """The settings dataclass ``cls`` of plug-in ``owner`` as command-line options, in declaration order."""
    if cls is None:
        return []
    return [SettingOption(kind, owner, f.name, f.metadata.get("flag") or "--" + f.name.replace("_", "-"),
                          f.default, f.metadata["help"], f.metadata.get("choices"), f.metadata.get("minimum"),
                          f.metadata.get("maximum"), f.metadata.get("value_type") or type(f.default),
                          f.metadata.get("metavar"))
            for f in dataclasses.fields(cls)]


def settings_label(settings: object | None) -> str:
    """The settings changed from their defaults, as a run directory's name carries them: ``-importance-mes``
    for choices, ``-pareto`` for a switch, ``-population32`` for a number."""
    if settings is None:
        return ""
    parts = []
    for f in dataclasses.fields(settings):   # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if value == f.default or f.default is None:
            continue
        if isinstance(value, bool):
            parts.append(f.name)
        elif isinstance(value, str):
            parts.append(value)
        else:
            parts.append(f"{f.name}{value:g}")
    return "".join(f"-{p}" for p in parts)
