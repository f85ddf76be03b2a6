"""The app's middleware list: ordered, editable, and what calls the hooks.

    from tasks.worker.metrics import JobMetrics
    app.middleware.add(MyMiddleware(), after=JobMetrics)

`add` appends, or inserts before the first / after the last middleware that is (an
instance of) `before` / `after`. A hook call goes only to the middlewares that implement the
hook (their class overrides it, or the instance has it as an attribute at the last change);
that list is worked out once per hook after each change, so a middleware added while the
worker serves gets the hooks called after `add` returns. Still, change the list before
`celery worker` starts the consumer: one added later misses the jobs already under way.
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
        # (the items, {hook: the items that implement it}), replaced with the items: a
        # dispatch that read the old pair fills the old dict, never the new one.
        self._by_hook: tuple[tuple[Middleware, ...], dict[str, tuple[Middleware, ...]]] = ((), {})
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
            self._replace(tuple(items))
        return middleware

    def remove(self, which: type[Middleware] | Middleware) -> None:
        """Remove this middleware, or every instance of this class."""
        with self._lock:
            kept = tuple(m for m in self._items if not _matches(m, which))
            if len(kept) == len(self._items):
                raise ValueError(f"{_name(which)} is not in the middleware list")
            self._replace(kept)

    def _replace(self, items: tuple[Middleware, ...]) -> None:
        self._items = items
        self._by_hook = (items, {})

    def implementing(self, hook: str) -> tuple[Middleware, ...]:
        """The middlewares that implement `hook`, in order (those that do not would do
        nothing: calling them was most of a hook call's cost, 15 middlewares by default)."""
        items, by_hook = self._by_hook
        found = by_hook.get(hook)
        if found is None:
            found = by_hook[hook] = tuple(m for m in items if _implements(m, hook))
        return found

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
        for middleware in self.implementing(hook):
            try:
                getattr(middleware, hook)(*args)
            except Exception:
                log.exception("middleware %s failed in %s", type(middleware).__name__, hook)

    def screen(self, consumer: Any, message: Any) -> Verdict | Taken | None:
        """The first middleware's verdict refusing this message (or `Taken`), or None. A screen that
        raises refuses it (the worker must never stop on a message)."""
        for middleware in self.implementing("screen_message"):
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
        for middleware in self.implementing("message_body"):
            body = middleware.message_body(message, headers)
            if body is not None:
                return body
        return None


def _implements(middleware: Middleware, hook: str) -> bool:
    """Whether `hook` does more than Middleware's do-nothing default."""
    if hook in getattr(middleware, "__dict__", ()):
        return True
    default = getattr(Middleware, hook, None)
    return default is None or getattr(type(middleware), hook, None) is not default


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
