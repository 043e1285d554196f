"""The judge: hidden tests whose verdict the student's code cannot reach.

Stock nbgrader runs the hidden tests in the same kernel as the student's
code, so a notebook that replaces ``np.allclose`` (or the checks themselves)
passes them. Here the kernel only *runs* the student's code; every
comparison with the reference happens in the grading process:

    grading process (full course_lib)            grading kernel (no answers)
    ---------------------------------            ---------------------------
    judge.server: a check from course_lib.grading    a hidden test cell calls
      calls the student's function through a   <-    check_sigmoid(sigmoid, part=...)
      proxy; each call crosses the socket      ->    judge.client runs sigmoid(*args),
      as plain data (judge.wire)               <-    sends back the result (and the args)
      compares with course_lib.reference,
      records the verdict for the cell,        ->    raises the verdict's AssertionError
      which is what the gradebook gets.              so the student reads the message.

Modules:
    wire         plain data <-> JSON frames (arrays as raw bytes; no pickle)
    experiments  the fixed probes the judge may run on a student's object
                 (a torch Function, a graph walker) when calling it is not enough
    client       the kernel side: what ``course_lib.grading`` is while grading
    sandbox      the kernel's operating-system sandbox (bubblewrap) and the
                 kernel manager that starts kernels in it
    launcher     the kernel's own start: the system-call filter, then ipykernel
    zygote       a process that has imported what kernels import, and forks
                 each kernel into the sandbox built for it
    server       the grading side: runs the checks, records verdicts per cell
    tamper       reads a submission for edited test cells and tampering code

Only ``server`` needs the reference answers; the others ship in the student
wheel's grading runtime.
"""

#: what never leaves the grading machine: the answers, the checks, the exercises'
#: manifest (its mistakes are edits of the solutions), the tooling, and the judge's own
#: grading side (file names, as shutil.ignore_patterns sees them)
GRADING_ONLY = ("reference", "grading", "manifest", "instructor", "server.py", "sealed.py",
                "tamper.py", "sandbox.py")
