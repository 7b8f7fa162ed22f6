"""The framing microbenchmark (bench/wsframes.py) measures both paths over a real connection."""

from __future__ import annotations

from bench import wsframes


async def test_both_paths_are_measured_and_every_frame_is_delivered():
    # measure() raises if the direct path ever left recv() waiting for a frame.
    rows = await wsframes.measure(count=300, repeats=1)
    assert [what.split(":")[0] for what, _, _ in rows] == ["receive", "send"]
    assert all(library > 0 and direct > 0 for _, library, direct in rows)


def test_the_table_is_printed(capsys):
    assert wsframes.main(["--count", "200", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| message | websockets sans-I/O | direct (transport.websocket) |" in out
    assert out.count("\n| ") == 4  # header, rule, two rows
