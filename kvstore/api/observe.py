"""Watching every answer, outermost of the middleware: how long it took and where the
time went (`Server-Timing`: route, cache, produce, apply_wait, peers, total, in
milliseconds), and the request and write-latency metrics (kvstore.metrics). 307s from
the routing middleware, errors and static files pass through here too, and so do the
outcomes of writes the fast path made but left to Django to answer (kvstore.api.fast),
with the time they took there."""

import time

from kvstore import metrics, timing
from kvstore.api import fastwrite, redirects
from kvstore.conf import store_settings


class ObserveMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        phases = timing.begin()
        attempt = request.META.get(fastwrite.ATTEMPT)
        if attempt is not None:  # a write made below Django: its time counts too
            started = attempt.started
            phases.update(attempt.phases)
        metrics.IN_PROGRESS.inc()
        try:
            response = self.get_response(request)
        finally:
            metrics.IN_PROGRESS.dec()
            timing.end()
        total = time.perf_counter() - started
        # ", fast" as on the fast path's own answers: it made this write.
        fast_write = ", fast" if attempt is not None else ""
        response["Server-Timing"] = timing.header(phases, total) + fast_write
        code = getattr(response, "error_code", "")
        namespace = self._namespace(request.path_info)
        metrics.record(
            namespace, request.method, response.status_code, code, phases, total
        )
        return response

    @staticmethod
    def _namespace(path):
        """The namespace a path addresses ("" for every other path)."""
        namespaces = store_settings().namespaces
        match = redirects.namespace_pattern(namespaces, "(?:/|$)").match(path)
        return match["ns"] if match else ""
