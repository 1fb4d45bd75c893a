"""Installing and removing the sandbox's patches to moto.

Each service module owns a ``PATCHES = Patches()`` and declares every patch with a decorator on the
code it installs, so what the sandbox changes about a service is read in that service's module alone.
``apply()`` gathers the modules listed in ``SERVICES``: adding a service is one line there.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["SERVICES", "Patch", "Patches", "apply", "endpoint_url", "is_applied", "revert"]

#: The modules of this package that patch moto, in the order they are applied.
SERVICES: Final = (
    "stacksets",
    "stackset_drift",
    "cfn_resources",
    "cfn_updates",
    "cfn_limits",
    "eventbridge",
    "sns",
    "sns_access",
    "lambda_runner",
    "lambda_configuration",
    "lambda_async",
    "sqs_event_source",
    "s3",
    "ses",
    "prerequisites",
    "mail_account",
    "cloudwatch",
)

_F = TypeVar("_F", bound=Callable[..., Any])
_MISSING: Final = object()


@dataclass(frozen=True)
class Patch:
    """Replace (or add) ``owner.name`` with ``make(original)``."""

    owner: Any
    name: str
    make: Callable[[Any], Any]


class Patches:
    """The patches one service module declares, each beside the code it installs."""

    def __init__(self) -> None:
        self._patches: list[Patch] = []
        self._on_revert: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str) -> Callable[[_F], _F]:
        """Decorate ``make(original) -> replacement``: the replacement may call moto's original."""

        def register(make: _F) -> _F:
            self._patches.append(Patch(owner, name, make))
            return make

        return register

    def replace(self, owner: Any, name: str, install: Callable[[Any], Any] = lambda value: value) -> Callable[[_F], _F]:
        """Decorate the replacement itself; ``install`` turns it into what is set (``classmethod``,
        ``property``, a wrapper)."""

        def register(replacement: _F) -> _F:
            self._patches.append(Patch(owner, name, lambda _original: install(replacement)))
            return replacement

        return register

    def on_revert(self, reset: Callable[[], None]) -> Callable[[], None]:
        """Decorate a function that forgets the module's state when the patches are removed."""
        self._on_revert.append(reset)
        return reset

    def __iter__(self) -> Iterator[Patch]:
        return iter(self._patches)

    def reset(self) -> None:
        for reset in self._on_revert:
            reset()


@dataclass
class _Applied:
    owner: Any
    name: str
    original: Any


_lock = threading.Lock()
_applied: list[_Applied] = []
_endpoint_url: str | None = None


def _modules(only: Sequence[str] | None = None) -> list[Patches]:
    found: list[Patches] = []
    for name in SERVICES if only is None else [n for n in SERVICES if n in only]:
        patches = importlib.import_module(f"{__package__}.{name}").PATCHES
        assert isinstance(patches, Patches), name
        found.append(patches)
    return found


def apply(endpoint_url: str | None = None, only: Sequence[str] | None = None) -> None:
    """Install every behaviour patch into moto (idempotent), or those of the ``only`` modules named.

    ``endpoint_url`` is where Lambda functions run by the sandbox send their AWS calls; it is the
    sandbox's own address.  Calling ``apply`` again only updates it.
    """
    global _endpoint_url
    with _lock:
        if endpoint_url is not None:
            _endpoint_url = endpoint_url
        if _applied:
            return
        for module in _modules(only):
            for patch in module:
                original = vars(patch.owner).get(patch.name, _MISSING)
                setattr(patch.owner, patch.name, patch.make(original))
                _applied.append(_Applied(patch.owner, patch.name, original))


def revert() -> None:
    """Put moto back the way it was before ``apply``."""
    global _endpoint_url
    with _lock:
        while _applied:
            done = _applied.pop()
            if done.original is _MISSING:
                delattr(done.owner, done.name)
            else:
                setattr(done.owner, done.name, done.original)
        _endpoint_url = None
        for module in _modules():
            module.reset()


def is_applied() -> bool:
    """Whether the behaviour patches are currently installed."""
    return bool(_applied)


def endpoint_url() -> str | None:
    """The sandbox's own address, given to ``apply`` (None before that)."""
    return _endpoint_url
