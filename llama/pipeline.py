"""Pipelines: named sets of file handlers, and the ``-p`` / ``-f`` / ``+f`` selection.

Examples
--------
>>> from llama.pipeline import DEFAULT_PIPELINE, select_pipeline
>>> "CoincSignificanceI3Lvc" in DEFAULT_PIPELINE
True
>>> p = select_pipeline(with_ancestors=["LvcSkymapHdf5"])
>>> p.names()
['SkymapInfo', 'LvcSkymapFits', 'LvcSkymapHdf5']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from llama.handler import REGISTRY, FileHandler, HandlerRegistry, ancestors, topological_order

__all__ = [
    "DEFAULT_PIPELINE",  # noqa: F822 (built lazily by __getattr__)
    "LLAMA2_REVIEW_PIPELINE",  # noqa: F822
    "PIPELINE_NAMES",
    "SUBTHRESHOLD_PIPELINE",  # noqa: F822
    "Pipeline",
    "named_pipelines",
    "select_pipeline",
]

#: Names of the pipelines that ``-p`` accepts.
PIPELINE_NAMES = ("DEFAULT_PIPELINE", "SUBTHRESHOLD_PIPELINE", "LLAMA2_REVIEW_PIPELINE")

_LLAMA2_REVIEW = (
    "LvcSkymapHdf5", "SkymapInfo", "LvcSkymapFits", "LVCGraceDbEventData",
    "IceCubeNeutrinoList", "LvcDistancesJson", "PAstro", "IceCubeNeutrinoListTxt",
    "IceCubeNeutrinoListCoincTxt", "IceCubeNeutrinoListTex", "CoincSignificanceI3Lvc",
    "CoincScatterI3LvcPdf", "CoincScatterI3LvcPng", "CoincSummaryI3LvcTex",
)  # fmt: skip


class Pipeline:
    """An ordered set of handler classes (each after its dependencies).

    Parameters
    ----------
    handlers
        Handler classes; order does not matter.
    name
        A label for messages.
    explicit
        Handlers chosen with ``-f``: they fail, rather than wait, when their inputs
        are missing.
    requested
        Handlers named with ``-f`` or ``+f`` (those the user asked for by name): a
        run says at its end when one of them was left waiting for an input.
    """

    def __init__(
        self,
        handlers: Iterable[type[FileHandler]],
        name: str = "",
        explicit: Iterable[type[FileHandler]] = (),
        requested: Iterable[type[FileHandler]] = (),
    ) -> None:
        self.handlers: tuple[type[FileHandler], ...] = tuple(topological_order(handlers))
        self.name = name
        self.explicit = frozenset(explicit)
        self.requested = frozenset(requested) | self.explicit

    def __iter__(self) -> Iterator[type[FileHandler]]:
        return iter(self.handlers)

    def __len__(self) -> int:
        return len(self.handlers)

    def __contains__(self, item: object) -> bool:
        names = self.names()
        return item in names if isinstance(item, str) else item in self.handlers

    def __repr__(self) -> str:
        return f"Pipeline({self.name or 'custom'}: {', '.join(self.names())})"

    def names(self) -> list[str]:
        """Class names, dependencies first."""
        return [h.__name__ for h in self.handlers]

    def union(self, other: Pipeline) -> Pipeline:
        """Handlers of both pipelines."""
        return Pipeline(
            (*self.handlers, *other.handlers),
            name=" + ".join(n for n in (self.name, other.name) if n),
            explicit=self.explicit | other.explicit,
            requested=self.requested | other.requested,
        )


def _registry() -> HandlerRegistry:
    import llama.handlers  # noqa: F401  (registers the catalogue)

    return REGISTRY


def named_pipelines(registry: HandlerRegistry | None = None) -> dict[str, Pipeline]:
    """The named pipelines, built from ``registry`` (the catalogue by default)."""
    reg = registry if registry is not None else _registry()
    sub = reg["CoincSignificanceSubthresholdI3Lvc"]
    return {
        "DEFAULT_PIPELINE": Pipeline(reg.values(), "DEFAULT_PIPELINE"),
        "SUBTHRESHOLD_PIPELINE": Pipeline({sub, *ancestors([sub])}, "SUBTHRESHOLD_PIPELINE"),
        "LLAMA2_REVIEW_PIPELINE": Pipeline(reg.resolve(_LLAMA2_REVIEW), "LLAMA2_REVIEW_PIPELINE"),
    }


def select_pipeline(
    pipeline: str | None = None,
    exact: Sequence[str] = (),
    with_ancestors: Sequence[str] = (),
    registry: HandlerRegistry | None = None,
) -> Pipeline:
    """The pipeline chosen by ``-p``, ``-f`` and ``+f`` (their union).

    Parameters
    ----------
    pipeline
        A name from `PIPELINE_NAMES`, or None.
    exact
        ``-f``: exactly these handlers (missing ancestors are not made).
    with_ancestors
        ``+f``: these handlers and all their ancestors.
    registry
        Where names are looked up (the catalogue by default).

    Raises
    ------
    KeyError
        For an unknown pipeline or handler name, listing the valid choices.
    """
    reg = registry if registry is not None else _registry()
    chosen: set[type[FileHandler]] = set()
    name = pipeline or ""
    if pipeline is not None:
        pipelines = named_pipelines(reg)
        if pipeline not in pipelines:
            raise KeyError(
                f"unknown pipeline {pipeline!r}; valid choices are: {', '.join(pipelines)}"
            )
        chosen.update(pipelines[pipeline])
    explicit = reg.resolve(exact)
    plus = reg.resolve(with_ancestors)
    chosen.update(explicit, plus, ancestors(plus))
    if not (pipeline or exact or with_ancestors):
        return named_pipelines(reg)["DEFAULT_PIPELINE"]
    return Pipeline(chosen, name=name, explicit=explicit, requested=plus)


def __getattr__(name: str) -> Pipeline:
    # the named pipelines are built on first use, once the catalogue is registered
    if name in PIPELINE_NAMES:
        return named_pipelines()[name]
    raise AttributeError(f"module 'llama.pipeline' has no attribute {name!r}")
