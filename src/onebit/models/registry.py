"""The model registry: ``register_model`` / ``create`` / ``list_models`` / ``model_info``.

A model family registers one plain function per architecture variant::

    @register_model(default_input_size=(3, 32, 32))
    def resnet20(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
        ...

``create("resnet20", num_classes=10, in_channels=3, width=0.5)`` calls it, checks the keyword
arguments against the function's signature first (a misspelt option is a ``TypeError`` that lists
the accepted ones), and sets ``model.default_input_size = (in_channels, H, W)`` on the result.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["ModelInfo", "create", "create_model", "list_models", "model_info", "register_model"]

ModelFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """Registry metadata of one model.

    ``default_input_size`` is the ``(C, H, W)`` the architecture is meant for (C is the usual
    channel count; a model built with another ``in_channels`` takes that many channels).
    ``options`` are the architecture keyword arguments beyond ``num_classes`` / ``in_channels``,
    with their defaults.
    """

    name: str
    fn: ModelFn
    default_input_size: tuple[int, int, int]
    family: str
    description: str
    options: dict[str, object]


_REGISTRY: dict[str, ModelInfo] = {}
_COMMON = ("num_classes", "in_channels")


def register_model(fn: ModelFn | None = None, *, name: str | None = None,
                   default_input_size: tuple[int, int, int] = (3, 32, 32)):
    """Register a model builder under ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with options
    (``@register_model(default_input_size=(1, 28, 28))``). The builder must accept
    ``num_classes`` and ``in_channels`` keyword arguments. Registering a taken name raises
    ``ValueError``.
    """

    def decorate(f: ModelFn) -> ModelFn:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key].fn is not f:
            raise ValueError(f"a model named {key!r} is already registered "
                             f"(by {_REGISTRY[key].fn.__module__})")
        params = inspect.signature(f).parameters
        missing = [p for p in _COMMON if p not in params]
        if missing:
            raise TypeError(f"model builder {key} must accept {', '.join(missing)}")
        size = tuple(int(v) for v in default_input_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"default_input_size must be (C, H, W), got {default_input_size!r}")
        options = {p.name: p.default for p in params.values()
                   if p.name not in _COMMON and p.kind is not inspect.Parameter.VAR_KEYWORD}
        doc = inspect.getdoc(f) or ""
        family = f.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelInfo(key, f, size, family,  # type: ignore[arg-type]
                                   doc.split("\n", 1)[0], options)
        return f

    return decorate(fn) if fn is not None else decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` filters with shell wildcards (``"resnet*"``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; unknown names raise ``ValueError`` listing known ones."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build the float model ``name`` (see :func:`list_models`).

    Raises ``ValueError`` for an unknown name (listing the known models) or a non-positive
    ``num_classes`` / ``in_channels``, and ``TypeError`` for an option the model does not take
    (listing the ones it does).
    """
    info = model_info(name)
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
    unknown = sorted(set(kwargs) - set(info.options))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in info.options.items()) or "none"
        raise TypeError(f"{name}() got unexpected option(s) {', '.join(map(repr, unknown))}; "
                        f"options it accepts: {accepted}")
    model = info.fn(num_classes=num_classes, in_channels=in_channels, **kwargs)
    _, h, w = info.default_input_size
    model.default_input_size = (in_channels, h, w)
    return model


#: alias with timm's name
create_model = create
