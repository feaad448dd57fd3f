"""Database failures the caller can wait out, as the core's UNAVAILABLE.

A database that is down, unreachable, restarting, or locked past the busy timeout is not
a bug in the gateway: the call answers UNAVAILABLE (503) with a Retry-After hint, never
INTERNAL (500). Every public method of a repository is wrapped once, by a class
decorator, so no path can forget it. Anything else (a constraint the code did not
expect, a syntax error) stays what it is: a bug, logged and answered INTERNAL.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

from sqlalchemy import exc as sa_exc

from service.core.errors import ApiError, database_unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATE classes and codes that mean "not now" rather than "wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (admin
# shutdown, cannot connect now, query canceled by statement_timeout), 55P03 lock not
# available (lock_timeout), 40001/40P01 serialization failure / deadlock.
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_CODES = frozenset({"55P03", "40001", "40P01"})
RETRY_AFTER_SECONDS = 2


def _sqlstate(error: BaseException) -> str:
    for candidate in (getattr(error, "orig", None), getattr(getattr(error, "orig", None), "__cause__", None)):
        for attribute in ("sqlstate", "pgcode"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, str):
                return value
    return ""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot answer now (outage, lock, timeout)."""
    if isinstance(error, sa_exc.TimeoutError | ConnectionError | TimeoutError):
        return True  # pool exhausted, connection refused/reset, connect timeout
    if isinstance(error, OSError):
        return True  # unreachable host, no route
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, sa_exc.InterfaceError):
            return True
        state = _sqlstate(error)
        if state:
            return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES
        # SQLite: "database is locked" (busy timeout passed), "disk I/O error", "unable to open".
        return isinstance(error, sa_exc.OperationalError)
    return False


def _raise_translated(error: Exception, where: str) -> NoReturn:
    if isinstance(error, ApiError) or not is_transient(error):
        raise error
    # The class name only: driver messages can echo connection parameters.
    log.warning("database unavailable", extra={"operation": where, "error_type": type(error).__name__})
    raise database_unavailable(RETRY_AFTER_SECONDS) from error


def _wrap_coroutine(function: Callable[..., Any], where: str) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await function(*args, **kwargs)
        except Exception as error:
            _raise_translated(error, where)

    return wrapper


def _wrap_generator(function: Callable[..., AsyncIterator[Any]], where: str) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for item in function(*args, **kwargs):
                yield item
        except Exception as error:
            _raise_translated(error, where)

    return wrapper


def unavailable_when_down(cls: type[T]) -> type[T]:
    """Wrap every public async method (and async generator) of a repository class."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        where = f"{cls.__name__}.{name}"
        if inspect.isasyncgenfunction(member):
            setattr(cls, name, _wrap_generator(member, where))
        elif inspect.iscoroutinefunction(member):
            setattr(cls, name, _wrap_coroutine(member, where))
    return cls
