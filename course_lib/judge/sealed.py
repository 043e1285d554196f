"""Set up sealed grading in a grading process: the runtime, the kernel, the judge.

``Sealed(course_root, settings)`` builds, in a private temporary folder,

- the grading runtime: the student's course_lib (no reference, no checks)
  plus a ``course_lib.grading`` that is judge.client;
- a Jupyter kernelspec "course-grading" that starts judge.launcher (a
  system-call filter, then ipykernel) with ``python -S`` and only that runtime
  and the installed libraries on its path;
- a running ``Judge``, and the ``Sandbox`` (judge.sandbox) every grading
  kernel of this process starts in, with the judge's socket bound into it.

nbgrader then only needs ``Sealed.config_overrides()``: the kernel's name, the
sandboxing kernel manager and the nbclient hooks.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import course_lib

from . import GRADING_ONLY, sandbox
from .server import Judge, Record

KERNEL_NAME = "course-grading"

# The grading kernel draws nothing (course_lib._drawing) and computes on one
# thread: a course's matrices are small, and kernels graded side by side would
# otherwise fight over the cores (bench/grading_bench.py measures both).
KERNEL_ENV = {"COURSE_GRADING": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

GRADING_STUB = '''"""While grading, each check_* asks the judge (course_lib.judge.client)."""
from ..judge.client import __getattr__  # noqa: F401
'''


_ACTIVE: Judge | None = None  # the judge of this process (traitlets copies config values)


def _judged_execute():
    from nbgrader.preprocessors import Execute

    class JudgedExecute(Execute):
        """nbgrader's Execute, telling the judge which cell runs and how it ended."""

        def on_notebook_start(self, **kwargs):
            # The kernel answers, so its sockets exist: no file may be added beside them.
            seal = getattr(self.km, "seal_socket_folder", None)
            if seal is not None:
                seal()

        def on_cell_execute(self, **kwargs):  # shadows nbclient's hook trait, as nbgrader does
            if _ACTIVE is not None:
                _ACTIVE.on_cell_execute(kwargs["cell"], kwargs["cell_index"])

        def on_cell_executed(self, **kwargs):
            super().on_cell_executed(**kwargs)  # nbgrader records errors nbclient missed
            if _ACTIVE is not None:
                _ACTIVE.on_cell_executed(kwargs["cell"], kwargs["cell_index"],
                                         kwargs.get("execute_reply"))

    return JudgedExecute


UNSEALED_REFUSED = ("nbgrader's own autograde would run the students' code outside the "
                    "course's sandbox, with the answers and the gradebook in reach: grade with "
                    "`course grade` (a class) or `course check NOTEBOOK --assignment ID` (one "
                    "notebook); where the sandbox cannot run, `course grade --unsealed`")


def refuse_unsealed() -> list:
    """Autograde's steps for nbgrader's own commands: one that refuses, saying why."""
    from nbgrader.preprocessors import NbGraderPreprocessor

    class RequireSealedGrading(NbGraderPreprocessor):
        def preprocess(self, nb, resources):
            raise RuntimeError(UNSEALED_REFUSED)

    return [RequireSealedGrading]


def __getattr__(name):
    # JudgedExecute subclasses nbgrader's Execute: built on first use, so that
    # importing this module does not import nbgrader.
    if name == "JudgedExecute":
        globals()[name] = cls = _judged_execute()
        return cls
    raise AttributeError(name)


@dataclass
class Settings:
    """The course's grading limits (nbgrader_config.py, section ``Judge``)."""

    notebook_timeout: float = 180.0  # seconds for a whole notebook
    kernel_memory_mb: int = 4096  # address space of each process of the grading kernel
    kernel_processes: int = 256  # processes and threads in its sandbox (where cgroups allow)
    manual_gradient_assignments: list[str] = field(default_factory=list)  # no torch there

    @classmethod
    def from_config(cls, config) -> Settings:
        section = config.get("Judge", {}) if hasattr(config, "get") else {}
        known = {k: section[k] for k in ("notebook_timeout", "kernel_memory_mb",
                                         "kernel_processes", "manual_gradient_assignments")
                 if k in section}
        return cls(**known)

    def limits(self) -> sandbox.Limits:
        # CPU time: a backstop far behind the judge's clock (which stops the notebook)
        return sandbox.Limits(memory_mb=int(self.kernel_memory_mb),
                              processes=int(self.kernel_processes),
                              cpu_seconds=int(self.notebook_timeout) * 2 + 60)


def copy_student_package(dest: Path) -> Path:
    """``dest/course_lib``: this course_lib without what stays where grading runs
    (GRADING_ONLY); what the student wheel, `make lab` and the grading kernel hold."""
    target = Path(dest) / "course_lib"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(Path(course_lib.__file__).parent, target,
                    ignore=shutil.ignore_patterns(*GRADING_ONLY, "__pycache__", "*.pyc"))
    return target


def write_kernelspec(kernels: Path, name: str, module: str, first_on_path: Path,
                     display_name: str, env: dict | None = None, **spec_fields) -> Path:
    """A kernelspec ``kernels/name`` that runs ``python -S -m module``, with only
    ``first_on_path`` and the installed libraries on its path (-S keeps .pth files,
    and so the editable install of the full course_lib, out)."""
    spec_dir = Path(kernels) / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-S", "-m", module, "-f", "{connection_file}"],
            "display_name": display_name, "language": "python",
            "env": {"PYTHONPATH": python_path(first_on_path), **(env or {})}, **spec_fields}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def build_runtime(dest: Path) -> Path:
    """The student's course_lib and the judge's client in ``dest``; returns dest."""
    copy_student_package(dest)
    (dest / "course_lib" / "grading").mkdir()
    (dest / "course_lib" / "grading" / "__init__.py").write_text(GRADING_STUB)
    return dest


def python_path(first: Path) -> str:
    """PYTHONPATH for a ``python -S`` kernel: ``first``, then the installed libraries."""
    return os.pathsep.join([str(first), *_library_paths()])


def _library_paths() -> list[str]:
    """Where numpy, ipykernel, torch... are installed (without course_lib's own folder)."""
    names = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [p for p in dict.fromkeys(sys.path) if p in names or p.endswith("site-packages")]


TORCH_IMPORT = re.compile(r"^\s*(import torch|from torch)\b", re.M)

# The grading runtime every Sealed of this process uses, built once, where it is set:
# the one of the zygotes this process was given (share_zygotes), which imported from it,
# so that the kernels forked from them see the same files at the same place.
SHARED_RUNTIME: Path | None = None


def kernel_base_env(runtime: Path) -> dict[str, str]:
    """The environment of every grading kernel, but for its judge's address."""
    return {**KERNEL_ENV, "PYTHONPATH": python_path(runtime)}


def imports_torch(course_root: Path, assignment: str) -> bool:
    """Does the source notebook of ``assignment`` import torch? (True if it cannot be
    read: a kernel started ahead then imports torch, as before this was asked.)"""
    path = Path(course_root) / "source" / assignment / f"{assignment}.ipynb"
    try:
        cells = json.loads(path.read_text())["cells"]
        return any(TORCH_IMPORT.search("".join(c.get("source", "")))
                   for c in cells if c.get("cell_type") == "code")
    except (OSError, ValueError, KeyError, TypeError):
        return True


def share_zygotes(course_root: Path, assignments, settings: Settings,
                  folder: Path) -> sandbox.Sandbox:
    """Zygotes (judge.zygote) for the kinds of kernel ``assignments`` need, to be shared
    by grading processes: a warm `course check` server's graders, which it forks, and the
    workers of `course grade`, which are handed them (zygote.Zygote.__reduce__). Each
    kind then imports numpy (and torch) once for all of them, not once per process.

    They import from one grading runtime, built here in ``folder``: a process that
    uses them calls use_shared_zygotes with ``box.runtime`` and ``box.zygotes`` before
    it builds its Sealed. Returns the Sandbox that owns them (``close()`` ends them; none
    where kernels start cold)."""
    runtime = build_runtime(Path(folder) / "runtime")
    (Path(folder) / "judge").mkdir()
    box = sandbox.Sandbox(folder, runtime, Path(folder) / "judge", limits=settings.limits())
    box.env = kernel_base_env(runtime)
    manual = set(settings.manual_gradient_assignments)
    # the first assignment's kind first: its kernels are the first ones asked for
    kinds = dict.fromkeys((a in manual, imports_torch(course_root, a)) for a in assignments)
    try:
        for no_torch, preload_torch in kinds if box.fork_kernels else ():
            box.no_torch, box.preload_torch = no_torch, preload_torch
            box.zygote()
    except BaseException:
        box.close()  # the zygotes started before the one that could not be
        raise
    return box


def use_shared_zygotes(runtime: Path, zygotes: dict) -> None:
    """Fork this process's grading kernels from ``zygotes`` (share_zygotes'), which
    imported from ``runtime``: every Sealed built from now on uses that runtime, so
    that its kernels see the files the zygotes imported, at the same place."""
    global SHARED_RUNTIME
    SHARED_RUNTIME = Path(runtime)
    sandbox.INHERITED_ZYGOTES.update(zygotes)


class Sealed:
    """The sealed-grading setup of this process (one at a time)."""

    def __init__(self, course_roots, settings: Settings | None = None,
                 extra_arguments=()):
        self.settings = settings or Settings()
        roots = [course_roots] if isinstance(course_roots, (str, Path)) else course_roots
        self.course_roots = [str(Path(r).resolve()) for r in roots]
        self.judge = Judge(self.settings.notebook_timeout)
        # Execute.extra_arguments of the course's nbgrader_config.py: the kernel's command
        # line, for a kernel started before nbgrader's Execute is (SandboxKernelManager.
        # start_ahead)
        self.extra_arguments = list(extra_arguments)
        self._imports_torch: dict[str, bool] = {}  # assignment -> its source imports torch
        folder = Path(self.judge.folder)
        self.runtime = SHARED_RUNTIME or build_runtime(folder / "runtime")
        # Interrupts travel as messages: no signal from here crosses into the sandbox.
        write_kernelspec(folder / "jupyter" / "kernels", KERNEL_NAME, "course_lib.judge.launcher",
                         self.runtime, "Course grading (sealed)", interrupt_mode="message")
        package = str(Path(course_lib.__file__).resolve().parent)
        self.sandbox = sandbox.Sandbox(folder, self.runtime, Path(self.judge.socket_dir),
                                       hidden=[*self.course_roots, package],
                                       limits=self.settings.limits())
        self.sandbox.env = {**kernel_base_env(self.runtime), "COURSE_JUDGE": self.judge.address}
        self.env = {"JUPYTER_PATH": os.pathsep.join(
            p for p in (str(folder / "jupyter"), os.environ.get("JUPYTER_PATH")) if p)}
        os.environ.update(self.env)
        atexit.register(self.close)  # a worker that ends leaves nothing in /tmp

    def config_overrides(self) -> dict:
        """nbgrader settings: the sealed kernel in its sandbox, and an Execute that tells
        the judge."""
        from nbgrader.converters import Autograde
        from nbgrader.preprocessors import Execute

        steps = [__getattr__("JudgedExecute") if step is Execute else step
                 for step in Autograde.class_traits()["autograde_preprocessors"].default()]
        return {"Execute__kernel_name": KERNEL_NAME,
                "JudgedExecute__kernel_name": KERNEL_NAME,
                "JudgedExecute__kernel_manager_class": sandbox.SandboxKernelManager,
                "Autograde__autograde_preprocessors": steps}

    def manual_gradients(self, assignment: str) -> bool:
        """Does ``assignment`` ask for gradients by hand (no torch while grading)?"""
        return assignment in self.settings.manual_gradient_assignments

    def imports_torch(self, assignment: str) -> bool:
        """imports_torch of the course, once per assignment."""
        if assignment not in self._imports_torch:
            self._imports_torch[assignment] = imports_torch(self.course_roots[0], assignment)
        return self._imports_torch[assignment]

    def kernel_settings(self, assignment: str) -> tuple[bool, bool]:
        """The sandbox's (no_torch, preload_torch) for a notebook of ``assignment``: torch
        is the stub where gradients are by hand, and a kernel started ahead imports torch
        only where the lesson does (importing it takes a second of CPU, wasted on every
        other notebook)."""
        return self.manual_gradients(assignment), self.imports_torch(assignment)

    def for_assignment(self, assignment: str) -> None:
        """The kernel's sandbox for a notebook of ``assignment`` (kernel_settings)."""
        self.sandbox.no_torch, self.sandbox.preload_torch = self.kernel_settings(assignment)

    def expect_next(self, then: str | bool = True) -> None:
        """What this process grades after the current notebook, so that the kernel started
        ahead (judge.warm) is the one the next notebook takes: ``then`` an assignment,
        False for nothing (no kernel is started), True for "not known" (one like the
        current notebook's)."""
        if then is True:
            self.sandbox.next_kernel = sandbox.SAME
        elif not then:
            self.sandbox.next_kernel = None
        else:
            self.sandbox.next_kernel = self.kernel_settings(then)

    def begin(self, assignment: str, expected: dict) -> None:
        """Before a submission of ``assignment`` runs: its test cells' checks."""
        global _ACTIVE
        # Several Sealed may live in one process (a `course check` inside a
        # grading session): the one that grades now owns the kernel's settings.
        os.environ.update(self.env)
        self.for_assignment(assignment)
        sandbox.activate(self.sandbox, self.judge)
        _ACTIVE = self.judge
        self.judge.begin(expected)

    def end(self) -> Record:
        return self.judge.end()

    def close(self) -> None:
        """Stop the judge and remove the runtime (the kernel is gone by now)."""
        self.judge.close()
