"""A kernel client whose waits for a message wake up every second.

pyzmq's asyncio poll sometimes misses the wake-up for a reply that arrives while a
cell opens ipywidgets (jupyter/nbclient#312, reproduced here with the lessons'
explorer cells): nbclient then sees the reply only when the cell's time limit runs
out, so an honest cell that shows a slider "runs past the time limit" (seen: 128 s
with a 120 s limit, 606 s with 600 s). A fresh poll sees a message that is already
queued, so waiting in slices of a second bounds that stall to a second and costs
nothing else. Grading (SandboxKernelManager) and the tests' notebook runs use it.

Its ``wait_for_ready`` also answers as soon as the kernel does. jupyter_client's
asks for kernel_info, waits a second for the reply, asks again; then it waits
for 0.2 s of silence on IOPub. A request that reaches a kernel before the kernel
serves is not seen until the next one arrives (zmq signals new messages by edge,
and that edge came before the kernel's handler was there), so a kernel that
started a moment after the first request was seen up to a second late: in
grading, each notebook's kernel is adopted as soon as the previous notebook
ends (judge.warm), often while it still starts. Here the request is repeated
after 0.05 s, then twice as long each time up to a second, and IOPub is
drained until 0.02 s of silence (what arrives later belongs to no cell, and
nbclient reads only the messages of the cell it runs). Measured on a toy
notebook: a notebook's wait for its kernel went from 1.0-1.5 s to what the
kernel itself needs.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import Type

SLICE = 1.0  # seconds: the longest a missed wake-up can delay a message
FIRST_ASK, LAST_ASK = 0.05, 1.0  # seconds between kernel_info requests, doubling
QUIET = 0.02  # seconds of silence on IOPub that end the wait for a kernel


class PolledChannel(AsyncZMQSocketChannel):
    """``get_msg(timeout)`` as before (a message, or Empty once ``timeout`` is over),
    but polled in slices of SLICE seconds."""

    async def get_msg(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return await super().get_msg(
                    timeout=SLICE if left is None else max(0.0, min(SLICE, left)))
            except Empty:
                if left is not None and left <= SLICE:
                    raise


class PolledKernelClient(AsyncKernelClient):
    shell_channel_class = Type(PolledChannel)
    iopub_channel_class = Type(PolledChannel)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """jupyter_client's wait (a kernel_info reply, and IOPub connected), asking
        again sooner and ending on a shorter silence: the module's docstring says why."""
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        wait = FIRST_ASK
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=wait)
            except Empty:
                wait = min(LAST_ASK, 2 * wait)
            else:
                if msg["msg_type"] == "kernel_info_reply":
                    try:  # IOPub connected: the kernel's status for this request arrives
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:  # what the kernel said while starting belongs to no cell
            try:
                await self.iopub_channel.get_msg(timeout=QUIET)
            except Empty:
                break


class PolledKernelManager(AsyncKernelManager):
    """jupyter_client's manager, handing out PolledKernelClient (for nbclient)."""

    client_factory = Type(PolledKernelClient, klass=AsyncKernelClient, config=True)
