"""The app's middleware list: ordered, editable, and what calls the hooks.

    from tasks.worker.metrics import JobMetrics
    app.middleware.add(MyMiddleware(), after=JobMetrics)

`add` appends, or inserts before the first / after the last middleware that is (an
instance of) `before` / `after`. The list is read on every hook call, so a middleware added
before the worker starts sees every hook; change it before `celery worker` starts the
consumer, not while it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tasks.worker.middleware.base import Middleware, Taken, Verdict

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Middleware)
Where = type[Middleware] | Middleware | None


class MiddlewareStack:
    """An ordered list of middlewares, and the calls of their hooks in that order."""

    def __init__(self, middlewares: Iterable[Middleware] = ()) -> None:
        self._lock = threading.Lock()
        self._items: tuple[Middleware, ...] = ()  # replaced, never changed: safe to iterate
        for middleware in middlewares:
            self.add(middleware)

    # --- the list --------------------------------------------------------------------------
    def add(self, middleware: M, *, before: Where = None, after: Where = None) -> M:
        """Add `middleware` at the end, or just before `before` / just after `after` (a
        middleware, or a class: its first instance for `before`, its last for `after`)."""
        if not isinstance(middleware, Middleware):
            raise TypeError(f"{middleware!r} is not a Middleware instance")
        if before is not None and after is not None:
            raise ValueError("give before= or after=, not both")
        with self._lock:
            items = list(self._items)
            if before is not None:
                index = self._index(items, before, first=True)
            elif after is not None:
                index = self._index(items, after, first=False) + 1
            else:
                index = len(items)
            items.insert(index, middleware)
            self._items = tuple(items)
        return middleware

    def remove(self, which: type[Middleware] | Middleware) -> None:
        """Remove this middleware, or every instance of this class."""
        with self._lock:
            kept = tuple(m for m in self._items if not _matches(m, which))
            if len(kept) == len(self._items):
                raise ValueError(f"{_name(which)} is not in the middleware list")
            self._items = kept

    def find(self, cls: type[M]) -> M | None:
        """The first middleware that is an instance of `cls`, or None."""
        return next((m for m in self._items if isinstance(m, cls)), None)

    def __iter__(self) -> Iterator[Middleware]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, which: object) -> bool:
        return any(_matches(m, which) for m in self._items)

    def __repr__(self) -> str:
        return f"MiddlewareStack([{', '.join(type(m).__name__ for m in self._items)}])"

    @staticmethod
    def _index(items: list[Middleware], which: Any, *, first: bool) -> int:
        found = [i for i, m in enumerate(items) if _matches(m, which)]
        if not found:
            raise ValueError(f"{_name(which)} is not in the middleware list")
        return found[0] if first else found[-1]

    # --- the hooks ---------------------------------------------------------------------------
    def dispatch(self, hook: str, *args: Any) -> None:
        """Call `hook` on every middleware in order; one that raises is logged and skipped."""
        for middleware in self._items:
            try:
                getattr(middleware, hook)(*args)
            except Exception:
                log.exception("middleware %s failed in %s", type(middleware).__name__, hook)

    def screen(self, consumer: Any, message: Any) -> Verdict | Taken | None:
        """The first middleware's verdict refusing this message (or `Taken`), or None. A screen that
        raises refuses it (the worker must never stop on a message)."""
        for middleware in self._items:
            try:
                verdict = middleware.screen_message(consumer, message)
            except Exception as exc:
                log.exception("middleware %s failed in screen_message", type(middleware).__name__)
                return Verdict(f"unreadable message: {type(exc).__name__}", True, None, None)
            if verdict is not None:
                return verdict
        return None

    def message_body(self, message: Any, headers: dict[str, Any]) -> tuple | None:
        """The first middleware's replacement body, or None; exceptions propagate (the
        consumer rejects the message with them as the reason)."""
        for middleware in self._items:
            body = middleware.message_body(message, headers)
            if body is not None:
                return body
        return None


def _matches(middleware: Middleware, which: object) -> bool:
    if isinstance(which, type):
        return isinstance(middleware, which)
    return middleware is which


def _name(which: object) -> str:
    return which.__name__ if isinstance(which, type) else type(which).__name__


def built(app: Any) -> MiddlewareStack | None:
    """The app's middleware list if one was made (by the worker, or a user's `add`), without
    making it: hooks outside a worker (an eager call) find none and do nothing."""
    stack = vars(app).get("middleware") if hasattr(app, "__dict__") else None
    return stack if isinstance(stack, MiddlewareStack) else None
