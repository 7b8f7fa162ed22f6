"""``bench.calls --repeat``: a level is decided by the majority of its runs, not by one run."""

from bench.calls import decided, representative


def _run(passed: bool, p99_in: float, p99_out: float, cpu: float = 0.3) -> dict:
    return {
        "pass": passed,
        "why": [] if passed else [f"inbound p99 {p99_in} ms"],
        "inbound": {"p99": p99_in},
        "outbound": {"p99": p99_out},
        "cpu_per_call_minute": cpu,
        "server_core": 0.7,
    }


def test_three_runs_stop_as_soon_as_two_agree():
    assert not decided([], 3)
    assert not decided([_run(True, 5, 6)], 3)
    assert decided([_run(True, 5, 6), _run(True, 4, 7)], 3)
    assert not decided([_run(True, 5, 6), _run(False, 15, 6)], 3)
    assert decided([_run(True, 5, 6), _run(False, 15, 6), _run(False, 12, 9)], 3)
    # One run per level (the default) is decided by that run.
    assert decided([_run(False, 15, 6)], 1)


def test_the_majority_decides_and_its_median_run_stands_for_the_level():
    runs = [_run(True, 9.0, 9.5, cpu=0.31), _run(False, 30, 41), _run(True, 4.0, 6.0, cpu=0.29)]
    level = representative(runs)
    assert level["pass"] and level["runs_passed"] == "2/3"
    # Of the two passing runs, the median by worst p99 (the lower one of two).
    assert level["cpu_per_call_minute"] == 0.29
    assert [r["pass"] for r in level["runs"]] == [True, False, True]
    assert level["runs"][1]["outbound_p99"] == 41


def test_a_majority_of_failures_fails_the_level():
    runs = [_run(False, 12, 14), _run(True, 5, 5), _run(False, 20, 18)]
    level = representative(runs)
    assert not level["pass"] and level["runs_passed"] == "1/3"
    assert level["why"] == ["inbound p99 12 ms"]


def test_a_single_run_is_its_own_level():
    run = _run(True, 3, 4)
    level = representative([run])
    assert level["pass"] and level["runs_passed"] == "1/1" and "runs" not in level
