"""The local runtime's counter history (runtime/recorder.py): samples kept, baselines and restarts."""

from __future__ import annotations

import math

from modelops.runtime.recorder import Recorder, Sample, increase, parse

A, B = "a" * 64, "b" * 64


def sample(t: float, requests: float, errors: float = 0.0, fast: float | None = None, h: str = A) -> Sample:
    """`fast` of the requests under 0.01 s (default all), the rest under +Inf."""
    fast = requests if fast is None else fast
    return Sample(t, h, requests, errors, ((0.01, fast), (math.inf, requests)))


def test_parse_sums_endpoints_and_reads_the_served_hash() -> None:
    text = f"""# TYPE modelops_requests_total counter
modelops_requests_total{{endpoint="v1",status="200"}} 7.0
modelops_requests_total{{endpoint="v2",status="200"}} 3.0
modelops_requests_total{{endpoint="v1",status="500"}} 2.0
# TYPE modelops_request_seconds histogram
modelops_request_seconds_bucket{{endpoint="v1",le="0.01"}} 8.0
modelops_request_seconds_bucket{{endpoint="v1",le="+Inf"}} 9.0
modelops_request_seconds_bucket{{endpoint="v2",le="0.01"}} 3.0
modelops_request_seconds_bucket{{endpoint="v2",le="+Inf"}} 3.0
# TYPE modelops_model_info gauge
modelops_model_info{{hash="{A}",name="m",version="v1"}} 1.0
"""
    s = parse(text, 5.0)
    assert (s.t, s.hash, s.requests, s.errors) == (5.0, A, 12.0, 2.0)
    assert s.buckets == ((0.01, 11.0), (math.inf, 12.0))


def test_only_moves_are_kept_and_the_baseline_before_since_is_exported() -> None:
    r = Recorder(keep_s=100)
    for t, n in ((1, 0), (2, 5), (3, 5), (4, 5), (5, 9)):
        r.add("u", sample(t, n))
    assert [s.t for s in r.series["u"]] == [1, 2, 5]  # 3 and 4 counted nothing
    assert [row[0] for row in r.export(since=3)["u"]] == [2, 5]  # 2: the baseline
    r.add("u", sample(200, 10))
    assert [s.t for s in r.series["u"]] == [200]  # older than keep_s


def test_increase_counts_from_the_baseline_through_restarts_and_only_its_hash() -> None:
    samples = [sample(1, 100, 1, 90), sample(3, 110, 1, 95), sample(5, 4, 0, 4), sample(7, 10, 2, 6)]
    got = increase(samples, since=2, at=7, content_hash=A)
    # 110 - 100 before the restart, then 10 from zero (the drop at t=5 is a new process)
    assert (got.requests, got.errors) == (20.0, 2.0)
    assert dict(got.buckets) == {0.01: 11.0, math.inf: 20.0}
    assert increase(samples, since=2, at=4, content_hash=A).requests == 10.0  # as it stood at t=4
    assert increase(samples, since=0, at=7, content_hash=A).requests == 120.0  # born in the window
    assert increase(samples, since=2, at=7, content_hash=B).requests == 0.0
    # the port now serves another model: what it counts before the swap is not B's
    swapped = [sample(1, 50), sample(3, 60, h=B), sample(4, 65, h=B)]
    assert increase(swapped, since=2, at=4, content_hash=B).requests == 65.0
    assert Sample.from_list(samples[1].as_list()) == samples[1]
