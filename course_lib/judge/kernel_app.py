"""The grading kernel's ipykernel application: ipykernel's, without the waits it adds
to every cell for what grading never uses.

A cell of ``x = 1`` cost the grading kernel about 2 ms of CPU and a notebook about
3 ms of wall time beyond the cell's own run, and a lesson has 50 to 90 cells.
Three of ipykernel's costs are left out here:

- **The shell channel's own thread.** ipykernel 7 reads shell messages on a
  thread of their own and hands each to the main thread and back, for kernel
  subshells (JEP 91), which nbclient never asks for. Here the main thread reads
  and answers them itself, as in ipykernel 6; the kernel says in kernel_info that
  it has no subshells. Interrupts and shutdown still come on the control thread.
- **The flush round trip when nothing was written** (OutStream below).
- **The 0.5 ms sleep before each reply** (``_execute_sleep``), there for clients
  that read replies and outputs on two sockets and want the outputs first:
  nbclient reads a cell's outputs until the kernel's "idle" for that cell, which
  the IOPub thread sends after them.

Measured with cells of ``x = 1`` in the sealed grading kernel, 300 in one notebook
against one cell, alternating runs with and without each change: the sleep and
the flush took a cell from 3.3-5.0 ms of wall time and 2.1-3.2 ms of the kernel's
CPU to 2.3-2.9 ms and 1.6-2.0 ms; the shell thread then took 2.7-2.8 ms and
1.9-2.1 ms to 2.3-2.4 ms and 1.6 ms. ``make bench`` prints what one more cell
costs. Every output still lands in its own cell, in order: tests/test_kernel_outputs.py.
"""

from __future__ import annotations

from ipykernel import iostream
from ipykernel.kernelapp import IPKernelApp
from traitlets import DottedObjectName


class OutStream(iostream.OutStream):
    """stdout and stderr that wait for the IOPub thread only when there is output.

    ipykernel's ``flush`` hands the flush to the IOPub thread and waits for it to
    answer, written or not; ipykernel flushes both streams before and after every
    cell, so a cell that printed nothing paid four cross-thread round trips. What a
    cell printed is still in the buffers at its end and is flushed as before;
    everything else a cell shows (display data, errors, "idle") already goes
    through the IOPub thread in the order it was sent. Output another thread writes
    while the flush runs was never ordered by it either.
    """

    def flush(self):
        # One dict read, atomic under the GIL; write() fills _buffers before it
        # schedules anything, so a buffered write is never missed here.
        if self._buffers or self.echo is not None:
            super().flush()


class GradingKernelApp(IPKernelApp):
    outstream_class = DottedObjectName("course_lib.judge.kernel_app.OutStream")

    def init_sockets(self):
        super().init_sockets()
        # No thread of its own for the shell channel (the module's docstring):
        # ipykernel's init_kernel then reads the shell socket on the main thread.
        self.shell_channel_thread = None

    def init_kernel(self):
        super().init_kernel()
        self.kernel._execute_sleep = 0.0  # no sleep before each reply (the docstring)
