"""Flags generated from their one declaration, as litgpt makes one typed signature the CLI,
the config file and the Python API.

    TrainingFlags(keys)   a flag per TrainConfig key: spelling, type, help (the field's
                          description) and --help group from tunelab.config; the command
                          gets a dict of the keys given (None dropped), paths as str
    ProviderFlags()       a flag per field of each registered provider's own settings model,
                          grouped per provider; the command gets ProviderValues, which builds
                          the chosen provider's settings object
    @generated            a command whose signature is its own parameters plus these flags

A command declares where the generated flags go by a parameter whose default is the flag set
(as typer's `= typer.Option(...)`): `flags: dict[str, Any] = TRAIN_FLAGS`. Typer asks for the
signature each time it builds the app, so a provider registered later brings its flags with
no edit here or in the command. Values are checked where they are used (resolve_config for
TrainConfig keys, with every problem at once), not by typer's bounds.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import typer
from typer.models import ParameterInfo

from tunelab.config import FLAG_NAMES, TrainConfig, choices, flag_of, value_type
from tunelab.errors import ConfigError, UsageError

ALL_LINEAR = "all-linear"
# A TrainConfig key's parameter name: apart from a command's own (migrate retrain's MODEL).
PREFIX = "config__"


def _option(name: str, kind: type, decls: Iterable[str], help_text: str, panel: str,
            metavar: str | None = None) -> inspect.Parameter:
    """One keyword parameter with a typer option; None by default, meaning "not given"."""
    option = typer.Option(*decls, help=help_text, rich_help_panel=panel, metavar=metavar,
                          show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind | None, option])


@dataclass(frozen=True)
class TrainingFlags:
    """A flag for each TrainConfig key in `keys`, in declaration order.

    `text`: keys taken as text, parsed by the command (the sweep's lists and ranges).
    `notes`: said after a key's description in this command. `names`: other spellings of a
    key's flag in this command (`--base-model` for model)."""

    keys: tuple[str, ...]
    text: frozenset[str] = frozenset()
    notes: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def every(cls, *, leave_out: Iterable[str] = (), **options: Any) -> TrainingFlags:
        """Every TrainConfig key but `leave_out`."""
        left = set(leave_out)
        return cls(tuple(key for key in TrainConfig.model_fields if key not in left), **options)

    def parameters(self) -> list[inspect.Parameter]:
        return [self._parameter(key) for key in self.keys]

    def _parameter(self, key: str) -> inspect.Parameter:
        mark, described = flag_of(key), TrainConfig.model_fields[key].description or ""
        decls = self.names.get(key) or (mark.flag or FLAG_NAMES[key],)
        help_text = f"{described} {self.notes[key]}" if key in self.notes else described
        kind: type = value_type(key)
        metavar = None
        if key in self.text:
            kind = str
        elif mark.path:
            kind = Path
        elif choices(key):
            metavar = f"<{'|'.join(choices(key))}>"
        elif key == "target_modules":
            metavar = f"<names|{ALL_LINEAR}>"
        return _option(PREFIX + key, kind, decls, help_text, mark.group, metavar)

    def collect(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The keys given, typed as TrainConfig takes them (paths as str)."""
        given = {key: values[PREFIX + key] for key in self.keys
                 if values.get(PREFIX + key) is not None}
        for key, value in given.items():
            if isinstance(value, Path):
                given[key] = str(value)
            elif key == "target_modules" and key not in self.text:
                given[key] = modules(value)
        return given


def modules(text: str) -> list[str] | str:
    """--target-modules: all-linear, or module names separated by commas."""
    if text.strip() == ALL_LINEAR:
        return ALL_LINEAR
    return [name.strip() for name in text.split(",") if name.strip()]


# ---- the providers' own settings --------------------------------------------------------------

@dataclass(frozen=True)
class Given:
    """The flags given from one provider's panel: its registry name and settings model."""

    provider: str
    model: Any
    values: Mapping[str, Any]


@dataclass(frozen=True)
class ProviderValues:
    """The provider flags given; `own(name)` is the settings object of the provider the
    command targets."""

    given: tuple[Given, ...] = ()

    def own(self, provider: str) -> Any:
        """`provider`'s own settings from its flags (its defaults for those not given), or
        None when it declares none. A flag of another provider is refused, by name."""
        from tunelab.providers import provider_entry

        entry = provider_entry(provider)
        mine = entry.settings if entry is not None else None
        for group in self.given:
            if group.model is not mine:
                flags = ", ".join(_flag(key) for key in group.values)
                raise UsageError(f"{flags}: a flag of --provider {group.provider}, not "
                                 f"{provider}", fix=f"drop it, or pass --provider "
                                                    f"{group.provider}")
        if mine is None:
            return None
        return build_settings(mine, self.given[0].values if self.given else {}, provider)


def build_settings(model: Any, values: Mapping[str, Any], provider: str) -> Any:
    """`model(**values)`, or one ConfigError naming each flag that broke it."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as error:
        problems = [f"{_flag(str(item['loc'][0]))}: {item['msg'][:1].lower()}{item['msg'][1:]}"
                    f", got {item.get('input')!r}" for item in error.errors()]
        raise ConfigError(problems, source=f"--provider {provider} settings") from None


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _switch(key: str) -> str:
    """A yes/no setting says either (--azure-bom/--no-azure-bom); not given: the default."""
    return f"{_flag(key)}/--no-{_flag(key)[2:]}"


@dataclass(frozen=True)
class ProviderFlags:
    """A flag per field of each registered provider's own settings model, under the
    provider's panel (a model several names share gives its flags once). Read from the
    registry each time, so a provider added to it brings its flags to every command that has
    these."""

    def _models(self) -> list[tuple[str, Any, str]]:
        from tunelab.providers import PROVIDERS

        models: dict[int, tuple[str, Any, str]] = {}
        for name, entry in PROVIDERS.items():
            if entry.settings is not None and id(entry.settings) not in models:
                models[id(entry.settings)] = (name, entry.settings,
                                              entry.panel or f"--provider {name}")
        return list(models.values())

    def parameters(self) -> list[inspect.Parameter]:
        return [_option(f"{name}__{key}", kind, (_switch(key) if kind is bool else _flag(key),),
                        info.description or "", panel)
                for name, model, panel in self._models()
                for key, info in model.model_fields.items()
                for kind in (_plain_type(info.annotation),)]

    def collect(self, values: Mapping[str, Any]) -> ProviderValues:
        given = []
        for name, model, _ in self._models():
            mine = {key: values[f"{name}__{key}"] for key in model.model_fields
                    if values.get(f"{name}__{key}") is not None}
            if mine:
                given.append(Given(name, model, mine))
        return ProviderValues(tuple(given))


def _plain_type(annotation: Any) -> type:
    """bool, int, float or str from a settings field's annotation (`int | None` -> int)."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = rest[0] if len(rest) == 1 else str
    return annotation if annotation in (bool, int, float) else str


# ---- the command -------------------------------------------------------------------------------

FlagSet = TrainingFlags | ProviderFlags


class GeneratedCommand:
    """A command function whose signature typer reads with its flag sets expanded in place."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__
        self.__doc__ = func.__doc__
        self.__annotations__: dict[str, Any] = {}  # typing.get_type_hints reads it

    def _own(self) -> list[inspect.Parameter]:
        """The function's parameters, annotations evaluated (its module is fully loaded by
        the time typer asks)."""
        hints = get_type_hints(self.func, include_extras=True)
        return [param.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                              annotation=hints.get(name, param.annotation))
                for name, param in inspect.signature(self.func).parameters.items()]

    @property
    def __signature__(self) -> inspect.Signature:
        parameters: list[inspect.Parameter] = []
        for param in self._own():
            if isinstance(param.default, FlagSet):
                parameters.extend(param.default.parameters())
            else:
                parameters.append(param)
        _refuse_clashes(self.__name__, parameters)
        return inspect.Signature(parameters)

    def __call__(self, **values: Any) -> Any:
        own = {}
        for param in inspect.signature(self.func).parameters.values():
            if isinstance(param.default, FlagSet):
                own[param.name] = param.default.collect(values)
            elif param.name in values:
                own[param.name] = values[param.name]
        return self.func(**own)


def _spellings(param: inspect.Parameter) -> list[str]:
    """The option names a parameter declares, in either typer style."""
    infos = [meta for meta in getattr(param.annotation, "__metadata__", ())
             if isinstance(meta, ParameterInfo)]
    names: list[str] = []
    for info in [*infos, param.default]:
        if not isinstance(info, ParameterInfo):
            continue
        decls = [*(info.param_decls or ())]
        if info in infos and isinstance(info.default, str):  # Annotated: the first name
            decls.insert(0, info.default)
        names.extend(part for decl in decls for part in decl.split("/") if part.startswith("-"))
    return names


def _refuse_clashes(command: str, parameters: list[inspect.Parameter]) -> None:
    """Two parameters of one name, or two options of one spelling, are a declaration bug (a
    provider's field named like a command's flag): said at once, naming both."""
    seen: dict[str, str] = {}
    for param in parameters:
        for spelling in (f"parameter {param.name}", *_spellings(param)):
            if spelling in seen:
                raise TypeError(f"tunelab {command}: {spelling} is declared twice "
                                f"({seen[spelling]} and {param.name})")
            seen[spelling] = param.name


def generated(func: Callable[..., Any]) -> GeneratedCommand:
    """Decorate a command whose parameters include flag sets (see the module docstring)."""
    return GeneratedCommand(func)
