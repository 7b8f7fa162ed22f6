"""The command line and the sockets of ``voiceagents.serve`` (processes: tests/servers/test_serve.py)."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from voiceagents.serve import cli, sockets
from voiceagents.serve.supervisor import MAX_BACKOFF, describe_exit, import_roots, restart_delay


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_the_app_defaults_to_asgi_application_in_uvicorns_form():
    assert cli.options_from(parse()).app == "patter_site.asgi:application"
    with override_settings(ASGI_APPLICATION="other.asgi.app"):
        assert cli.default_app() == "other.asgi:app"


def test_the_bench_command_line_parses():
    namespace = parse(
        "patter_site.asgi:application", "--host", "0.0.0.0", "--port", "8123", "--workers", "2"
    )
    options = cli.options_from(namespace)
    assert (options.app, options.host, options.port, options.workers) == (
        "patter_site.asgi:application",
        "0.0.0.0",
        8123,
        2,
    )
    assert (options.backlog, options.log_level, options.shared_socket) == (2048, "info", False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers must be 1 or more"),
        (["patter_site.asgi.application"], "APP must be module:attribute"),
    ],
)
def test_bad_options_are_refused(argv, message):
    with pytest.raises(ValueError, match=message):
        cli.options_from(parse(*argv))
    with pytest.raises(CommandError, match=message):
        call_command("voiceagents_serve", *argv)


@override_settings(ASGI_APPLICATION=None)
def test_no_app_and_no_asgi_application_is_refused():
    with pytest.raises(ValueError, match="give APP"):
        cli.options_from(parse())


def test_workers_default_to_web_concurrency(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert parse().workers == 3


@pytest.mark.skipif(not sockets.BALANCED, reason="SO_REUSEPORT balances only on Linux")
def test_reuse_port_sockets_share_a_port_that_others_cannot_take():
    first = sockets.bind("127.0.0.1", 0, reuse_port=True, backlog=8)
    port = first.getsockname()[1]
    second = sockets.bind("127.0.0.1", port, reuse_port=True, backlog=8)
    try:
        with pytest.raises(OSError) as refused:
            sockets.bind("127.0.0.1", port, reuse_port=False, backlog=8)
        assert refused.value.errno == errno.EADDRINUSE
        # Both listen: connections reach the port while either is open.
        second.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(not sockets.BALANCED, reason="SO_REUSEPORT balances only on Linux")
def test_the_supervisors_reservation_takes_no_connection():
    """The supervisor holds the port bound but not listening: every connection goes to a worker."""
    reserved = sockets.bind("127.0.0.1", 0, reuse_port=True)
    port = reserved.getsockname()[1]
    worker = sockets.bind("127.0.0.1", port, reuse_port=True, backlog=64)
    try:
        for _ in range(50):  # each from a new source port, hashed anew
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = worker.accept()
                accepted.close()
    finally:
        worker.close()
        reserved.close()


def test_exits_are_described():
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert sockets.url("::1", 80) == "http://[::1]:80"


def test_a_worker_that_keeps_dying_is_restarted_later_and_later():
    delays = [restart_delay(n) for n in range(0, 10)]
    assert delays == [0, 0, 1, 2, 4, 8, 16, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]


def test_the_workers_import_the_project_from_where_this_process_does():
    repo = str(Path(__file__).resolve().parents[2])
    assert import_roots("patter_site.asgi", "tests.settings", "voiceagents.serve") == [repo]
    # The interpreter's own (the standard library, site-packages) the workers have anyway.
    assert import_roots("json", "django.conf", "", "no_such_module_here") == []
