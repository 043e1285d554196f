"""A reply the kernel sent is seen within a second, even when a poll misses it
(jupyter/nbclient#312: an honest widget cell then waited out its whole time limit)."""

import asyncio
from queue import Empty

import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

from course_lib.judge import polled_client
from course_lib.judge.polled_client import SLICE, PolledChannel, PolledKernelManager
from course_lib.judge.sandbox import SandboxKernelManager


class MissedWakeUp(PolledChannel):
    """A channel whose message is queued from the start, but whose first poll misses it
    (waits its whole timeout and finds nothing), as pyzmq's asyncio poll sometimes does."""

    def __init__(self, message=None):  # no socket: get_msg of the base is replaced below
        self.message, self.waits = message, []


@pytest.fixture
def missed_wake_up(monkeypatch):
    clock = [0.0]  # a wait of t seconds advances this clock by t: no real waiting

    async def base_get_msg(self, timeout=None):
        self.waits.append(timeout)
        clock[0] += timeout
        if self.message is None or len(self.waits) == 1:
            raise Empty
        return self.message

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", base_get_msg)
    monkeypatch.setattr(polled_client.time, "monotonic", lambda: clock[0])
    return MissedWakeUp


def test_a_reply_whose_wake_up_was_missed_arrives_at_the_next_slice(missed_wake_up):
    channel = missed_wake_up({"msg_type": "execute_reply"})
    assert asyncio.run(channel.get_msg(timeout=600)) == {"msg_type": "execute_reply"}
    assert channel.waits == [SLICE, SLICE]  # not one wait of 600 s


def test_a_wait_without_a_limit_is_sliced_too(missed_wake_up):
    channel = missed_wake_up({"msg_type": "status"})
    assert asyncio.run(channel.get_msg()) == {"msg_type": "status"}
    assert channel.waits == [SLICE, SLICE]


def test_no_message_still_ends_in_empty_when_the_limit_is_over(missed_wake_up):
    channel = missed_wake_up(None)
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=2.5))
    assert channel.waits == [SLICE, SLICE, 0.5]


def test_grading_kernels_and_stock_fallback_hand_out_the_polled_client():
    from jupyter_client.asynchronous import AsyncKernelClient

    from course_lib.judge.polled_client import PolledKernelClient

    for manager in (SandboxKernelManager, PolledKernelManager):
        assert manager.client_factory.default_value is PolledKernelClient
    assert PolledKernelClient.shell_channel_class.default_value is PolledChannel
    assert PolledKernelClient.iopub_channel_class.default_value is PolledChannel
    assert issubclass(PolledKernelClient, AsyncKernelClient)


# -- waiting for a kernel that is still starting ---------------------------------------------

class StartingKernel:
    """A kernel that serves from ``ready_at`` (seconds on a fake clock) on: a request sent
    before then is answered only once a later request arrives (zmq's edge-triggered wake-up:
    polled_client's docstring), and it dies at ``dies_at``."""

    def __init__(self, clock, ready_at, dies_at=float("inf")):
        self.clock, self.ready_at, self.dies_at = clock, ready_at, dies_at
        self.asked = []  # the fake time of each kernel_info request
        self.shell_waits, self.iopub_waits = [], []
        self.iopub = ["iopub_welcome", "status starting", "status busy", "status idle"]

    def serving(self) -> bool:
        return self.clock[0] >= self.ready_at

    async def shell_get_msg(self, timeout):
        # answered at the moment of a request sent while it serves; else the wait runs out
        if self.serving() and self.asked and self.asked[-1] >= self.ready_at:
            self.shell_waits.append(0.0)
            return {"msg_type": "kernel_info_reply", "content": {"protocol_version": "5.5"}}
        self.shell_waits.append(timeout)
        self.clock[0] += timeout
        raise Empty

    async def iopub_get_msg(self, timeout):
        self.iopub_waits.append(timeout)
        if self.iopub:
            return {"msg_type": self.iopub.pop(0)}
        self.clock[0] += timeout
        raise Empty


def waiting_client(kernel):
    from course_lib.judge.polled_client import PolledKernelClient

    class Client(PolledKernelClient):
        shell_channel = property(lambda self: type("S", (), {"get_msg": lambda _, timeout:
                                                             kernel.shell_get_msg(timeout)})())
        iopub_channel = property(lambda self: type("I", (), {"get_msg": lambda _, timeout:
                                                             kernel.iopub_get_msg(timeout)})())

        def kernel_info(self):
            kernel.asked.append(kernel.clock[0])

        async def _async_is_alive(self):
            return kernel.clock[0] < kernel.dies_at

    return Client()


@pytest.fixture
def fake_clock(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(polled_client.time, "monotonic", lambda: clock[0])
    return clock


def test_a_kernel_still_starting_is_asked_again_soon_and_seen_when_it_serves(fake_clock):
    from course_lib.judge.polled_client import FIRST_ASK, QUIET

    kernel = StartingKernel(fake_clock, ready_at=0.3)
    asyncio.run(waiting_client(kernel).wait_for_ready(timeout=60))
    # asked at 0, 0.05, 0.15, 0.35: seen 0.05 s after it began serving, where jupyter_client's
    # own wait (asking once a second) saw it at 1 s
    assert kernel.asked == pytest.approx([0, FIRST_ASK, 3 * FIRST_ASK, 7 * FIRST_ASK])
    assert kernel.shell_waits == pytest.approx([0.05, 0.1, 0.2, 0.0])
    # then IOPub: connected (the welcome), drained until a silence of QUIET seconds
    assert kernel.iopub_waits == [0.2, QUIET, QUIET, QUIET, QUIET]
    assert fake_clock[0] == pytest.approx(0.35 + QUIET)


def test_the_wait_between_requests_doubles_up_to_a_second(fake_clock):
    from course_lib.judge.polled_client import LAST_ASK

    kernel = StartingKernel(fake_clock, ready_at=5.0)
    asyncio.run(waiting_client(kernel).wait_for_ready(timeout=60))
    waits = [w for w in kernel.shell_waits if w]
    assert waits[:5] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8])
    assert set(waits[5:]) == {LAST_ASK}
    assert kernel.asked[-1] - 5.0 <= LAST_ASK  # seen within a second of serving


def test_a_kernel_that_dies_or_never_answers_is_named_in_jupyter_clients_words(fake_clock):
    """course_lib.instructor.grade.KERNEL_START_FAILED recognises these words."""
    from course_lib.instructor.grade import KERNEL_START_FAILED

    dead = StartingKernel(fake_clock, ready_at=10.0, dies_at=0.5)
    with pytest.raises(RuntimeError, match="Kernel died before replying to kernel_info"):
        asyncio.run(waiting_client(dead).wait_for_ready(timeout=60))
    fake_clock[0] = 0.0
    silent = StartingKernel(fake_clock, ready_at=float("inf"))
    with pytest.raises(RuntimeError) as stopped:
        asyncio.run(waiting_client(silent).wait_for_ready(timeout=3))
    assert "didn't respond in 3 seconds" in str(stopped.value)
    assert any(words in str(stopped.value) for words in KERNEL_START_FAILED)
