"""GET /metrics: requests, batch sizes and latency percentiles per adapter, kept in memory (recent window)."""

import statistics
import threading
from collections import Counter, defaultdict, deque

WINDOW = 2048  # latencies kept per adapter: percentiles describe recent load, memory stays bounded


def _percentiles(values) -> dict:
    if not values:
        return {}
    if len(values) == 1:
        return {f"p{p}": round(values[0], 2) for p in (50, 90, 99)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": round(cuts[p - 1], 2) for p in (50, 90, 99)}


class ServeMetrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()
        self.errors: Counter = Counter()
        self.latency_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.batch_sizes: Counter = Counter()

    def request(self, adapter: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self.requests[adapter] += 1
            self.errors[adapter] += not ok
            self.latency_ms[adapter].append(seconds * 1000)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] += 1

    def snapshot(self) -> dict:
        with self._lock:
            batches = sum(self.batch_sizes.values())
            rows = sum(size * count for size, count in self.batch_sizes.items())
            every = [v for values in self.latency_ms.values() for v in values]
            return {
                "requests": sum(self.requests.values()),
                "errors": sum(self.errors.values()),
                "latency_ms": _percentiles(every),
                "batches": batches,
                "mean_batch_size": round(rows / batches, 3) if batches else None,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "adapters": {
                    name: {
                        "requests": count,
                        "errors": self.errors[name],
                        "latency_ms": _percentiles(list(self.latency_ms[name])),
                    }
                    for name, count in sorted(self.requests.items())
                },
            }
