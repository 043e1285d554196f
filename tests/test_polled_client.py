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
