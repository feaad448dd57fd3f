"""CEL's comprehension macros (all, exists, exists_one, map, filter), compiled into
closures; errors follow CEL: ``all`` is false if any element is false, even when
another element's predicate fails to evaluate (and ``exists`` likewise true)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.embedded_cluster.schema import cel_values as values
from service.embedded_cluster.schema.cel_values import Activation, CelEvalError, Evaluator


def _range(collection: Any) -> list[Any]:
    if isinstance(collection, list | dict):
        return list(collection)
    raise CelEvalError(f"cannot iterate over {values.type_name(collection)}")


def _macro_all(target: Evaluator, variable: str, bodies: list[Evaluator]) -> Evaluator:
    (predicate,) = bodies

    def evaluate(env: Activation) -> bool:
        error: CelEvalError | None = None
        for item in _range(target(env)):
            try:
                if not values.truthy(predicate({**env, variable: item})):
                    return False
            except CelEvalError as exc:
                error = error or exc
        if error is not None:
            raise error
        return True
    return evaluate


def _macro_exists(target: Evaluator, variable: str, bodies: list[Evaluator]) -> Evaluator:
    (predicate,) = bodies

    def evaluate(env: Activation) -> bool:
        error: CelEvalError | None = None
        for item in _range(target(env)):
            try:
                if values.truthy(predicate({**env, variable: item})):
                    return True
            except CelEvalError as exc:
                error = error or exc
        if error is not None:
            raise error
        return False
    return evaluate


def _macro_exists_one(target: Evaluator, variable: str, bodies: list[Evaluator]) -> Evaluator:
    (predicate,) = bodies
    return lambda env: sum(bool(values.truthy(predicate({**env, variable: item})))
                           for item in _range(target(env))) == 1


def _macro_map(target: Evaluator, variable: str, bodies: list[Evaluator]) -> Evaluator:
    if len(bodies) == 1:
        (transform,) = bodies
        return lambda env: [transform({**env, variable: item}) for item in _range(target(env))]
    keep, transform = bodies
    return lambda env: [transform({**env, variable: item}) for item in _range(target(env))
                        if values.truthy(keep({**env, variable: item}))]


def _macro_filter(target: Evaluator, variable: str, bodies: list[Evaluator]) -> Evaluator:
    (keep,) = bodies
    return lambda env: [item for item in _range(target(env)) if values.truthy(keep({**env, variable: item}))]


MACRO_BUILDERS: dict[str, Callable[[Evaluator, str, list[Evaluator]], Evaluator]] = {
    "all": _macro_all, "exists": _macro_exists, "exists_one": _macro_exists_one,
    "map": _macro_map, "filter": _macro_filter,
}
