"""The transport's edge-triggered poller: wake-ups, closing, cancellation, fd reuse.

Real socket pairs; each test runs a real :class:`Poller` task.
"""

from __future__ import annotations

import functools
import socket

import pytest
import trio
import trio.testing
from amicable_preview_router.transport import Poller, Transport


@pytest.fixture
async def poller(nursery: trio.Nursery) -> Poller:
    poller = Poller()
    await nursery.start(poller.run)
    return poller


def _pair(poller: Poller) -> tuple[Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    transport = Transport(ours)
    poller.register(transport)
    return transport, theirs


async def test_each_later_arrival_wakes_the_reader(poller: Poller) -> None:
    transport, peer = _pair(poller)
    with peer:
        got = bytearray()
        async with trio.open_nursery() as nursery:

            async def read_three() -> None:
                for _ in range(3):
                    assert await transport.fill(wait=True)
                    got.extend(transport.buf)
                    transport.buf.clear()

            nursery.start_soon(read_three)
            for part in (b"one ", b"two ", b"three"):
                await trio.testing.wait_all_tasks_blocked()
                peer.send(part)  # arrives while the reader is parked
        assert got == b"one two three"
    transport.close()


async def test_data_that_arrived_before_the_wait_is_not_missed(poller: Poller) -> None:
    transport, peer = _pair(poller)
    with peer:
        peer.send(b"early")
        await trio.testing.wait_all_tasks_blocked()  # the poller saw the edge already
        with trio.fail_after(5):
            assert await transport.fill(wait=True)
        assert transport.buf == b"early"
        peer.send(b"late")
        with trio.fail_after(5):
            assert await transport.fill(wait=True)
        assert transport.buf == b"earlylate"
        peer.shutdown(socket.SHUT_WR)
        with trio.fail_after(5):
            assert not await transport.fill(wait=True)  # end of stream wakes it too
    transport.close()


async def test_close_wakes_a_parked_reader_with_closed_resource_error(poller: Poller) -> None:
    transport, peer = _pair(poller)
    with peer:
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await transport.fill(wait=True)

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            transport.close()
        with pytest.raises(trio.ClosedResourceError):
            await transport.fill()


async def test_cancelled_wait_leaves_the_transport_usable(poller: Poller) -> None:
    transport, peer = _pair(poller)
    with peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(transport.fill, wait=True))
            await trio.testing.wait_all_tasks_blocked()
            assert transport.waiter is not None
            nursery.cancel_scope.cancel()
        assert transport.waiter is None
        peer.send(b"after")
        with trio.fail_after(5):
            assert await transport.fill(wait=True)
        assert transport.buf == b"after"
    transport.close()


async def test_two_readers_of_one_transport_are_refused(poller: Poller) -> None:
    transport, peer = _pair(poller)
    with peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(transport.fill, wait=True))
            await trio.testing.wait_all_tasks_blocked()
            transport.ready = False
            with pytest.raises(trio.BusyResourceError):
                await transport.wait_readable()
            nursery.cancel_scope.cancel()
    transport.close()


async def test_a_reused_descriptor_belongs_to_the_new_transport(poller: Poller) -> None:
    first, peer1 = _pair(poller)
    fd = first.fd
    first.close()
    peer1.close()
    second, peer2 = _pair(poller)  # the kernel hands out the lowest free descriptor again
    with peer2:
        assert second.fd == fd
        peer2.send(b"new")
        with trio.fail_after(5):
            assert await second.fill(wait=True)
        assert second.buf == b"new"
    second.close()


async def test_transport_without_a_poller_waits_with_trio() -> None:
    ours, peer = socket.socketpair()
    transport = Transport(ours)
    with peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(transport.fill, wait=True))
            await trio.testing.wait_all_tasks_blocked()
            peer.send(b"x")
        assert transport.buf == b"x"
    transport.close()


async def test_data_left_behind_by_a_full_read_is_read_without_a_new_edge(
    poller: Poller,
) -> None:
    transport, peer = _pair(poller)
    big = bytes(range(256)) * 1024  # 256 KiB: more than one read takes
    with peer:
        peer.setblocking(False)
        sent = peer.send(big)
        assert sent > 65536
        await trio.testing.wait_all_tasks_blocked()  # the one edge is consumed
        with trio.fail_after(5):
            assert await transport.fill(wait=True)
            assert len(transport.buf) == 65536
            while len(transport.buf) < sent:
                # Nothing new arrives: a waiting read must still find what is left.
                assert await transport.fill(wait=True)
        assert bytes(transport.buf) == big[:sent]
    transport.close()


async def test_receive_some_smaller_than_what_is_waiting_leaves_the_rest_readable(
    poller: Poller,
) -> None:
    transport, peer = _pair(poller)
    with peer:
        peer.send(b"0123456789")
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            assert await transport.receive_some(4, wait=True) == b"0123"
            assert await transport.receive_some(4, wait=True) == b"4567"
            assert await transport.receive_some(4, wait=True) == b"89"
    transport.close()


async def test_end_of_stream_that_came_with_the_last_data_is_not_missed(
    poller: Poller,
) -> None:
    # Data and FIN that arrive together raise one edge; the read that takes the data does
    # not report the end, so a second wait must not park for an edge that never comes.
    transport, peer = _pair(poller)
    with peer:
        peer.send(b"bye")
        peer.shutdown(socket.SHUT_WR)
        await trio.testing.wait_all_tasks_blocked()  # the one edge is consumed
        with trio.fail_after(5):
            assert await transport.fill(wait=True)
            assert transport.buf == b"bye"
            assert not await transport.fill(wait=True)
    transport.close()


async def test_a_hook_runs_without_a_parked_task_and_sees_the_end_of_stream(
    poller: Poller,
) -> None:
    # The keep-alive lane's upstream hook runs while no task waits on that socket; it must
    # also be called for the end of stream (with ``ended`` already set), or an answer that
    # comes with the upstream's FIN would never be handled.
    transport, peer = _pair(poller)
    seen: list[tuple[bytes, bool]] = []

    def hook() -> bool:
        transport.ready = False
        try:
            data = transport.sock.recv(100)
        except BlockingIOError:
            data = b"<nothing>"
        seen.append((data, transport.ended))
        return True

    transport.on_readable = hook
    with peer:
        await trio.testing.wait_all_tasks_blocked()
        seen.clear()  # registration may report the socket once
        peer.send(b"hello")
        with trio.fail_after(5):
            while not seen:
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(0.001)
        assert seen == [(b"hello", False)]
        peer.send(b"bye")
        peer.shutdown(socket.SHUT_WR)
        with trio.fail_after(5):
            while not seen[-1][1]:
                await trio.sleep(0.001)
        assert b"".join(d for d, _ in seen[1:] if d != b"<nothing>") == b"bye"
        assert transport.waiter is None
    transport.on_readable = None
    transport.close()


async def test_a_failing_hook_closes_only_its_own_connection(
    poller: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    broken, broken_peer = _pair(poller)
    healthy, healthy_peer = _pair(poller)

    def bug() -> bool:
        raise RuntimeError("a bug in an in-poller path")

    failed: list[BaseException] = []

    async def reader() -> None:
        try:
            await broken.wait_readable()
        except trio.ClosedResourceError as exc:
            failed.append(exc)

    with broken_peer, healthy_peer:
        await trio.testing.wait_all_tasks_blocked()
        broken.ready = healthy.ready = False  # as after a recv that found nothing
        broken.on_readable = bug
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert broken.waiter is not None  # parked
            broken_peer.send(b"x")
        assert broken.closed
        assert failed  # its parked task woke to a closed transport
        assert "a readiness hook failed" in caplog.text
        # the poller still serves the other connection
        healthy_peer.send(b"still here")
        with trio.fail_after(5):
            await healthy.wait_readable()
        assert healthy.sock.recv(100) == b"still here"
    healthy.close()
