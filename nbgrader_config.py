"""nbgrader settings for the backpropagation course.

Folders follow nbgrader's own layout at the top level of this repository:
source/ (instructor notebooks with solutions and hidden tests), release/
(student versions, generated and committed), submitted/, autograded/ and
feedback/ (written while grading; not committed).
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "backprop"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# Only the notebook is handed out; course_lib is installed, not copied.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# The gradebook: SQLite beside this file by default; set COURSE_DB_URL (e.g.
# postgresql://user@host/db) to use another database unchanged.
c.CourseDirectory.db_url = os.environ.get(
    "COURSE_DB_URL", "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db"))

# What students see in place of a solution.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A cell may run at most this long (a whole lesson runs in a few seconds); an
# infinite loop is interrupted and the submission is marked "timeout".
# COURSE_CELL_TIMEOUT=SECONDS sets another limit (the tests set a far larger one:
# what they check must not depend on how busy the machine is).
c.Execute.timeout = int(os.environ.get("COURSE_CELL_TIMEOUT", "20"))
c.Execute.interrupt_on_timeout = True
# The grading kernel keeps no history file and logs only errors (ipykernel's
# start-up warnings would otherwise scroll through `course grade`'s progress bar).
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:",
                             "--IPKernelApp.log_level=ERROR"]

# Sealed grading (course_lib.judge), used by `course grade` and `course check`:
# a whole notebook may run at most notebook_timeout seconds; the grading kernel
# may use at most kernel_memory_mb of address space; in the lessons that ask
# for gradients by hand, torch cannot be imported while grading.
# COURSE_NOTEBOOK_TIMEOUT=SECONDS sets another notebook limit (as above).
c.Judge.notebook_timeout = int(os.environ.get("COURSE_NOTEBOOK_TIMEOUT", "180"))
c.Judge.kernel_memory_mb = 6144
c.Judge.manual_gradient_assignments = ["01_chain_rule", "02_sigmoid", "03_softmax_jacobian",
                                       "04_backprop_mlp"]

# Autograding is sealed (course_lib.judge: each kernel in an operating-system sandbox,
# every verdict reached outside it); `course grade` and `course check` run it. nbgrader's
# own autograde (the command, the formgrader's Autograde button) would run the students'
# code unconfined, with the answers and the gradebook in reach, so it is refused with a
# message naming the command to use. `course grade --unsealed` sets COURSE_UNSEALED=1 to
# grade with stock nbgrader where the sandbox cannot run.
if os.environ.get("COURSE_UNSEALED") != "1":
    from course_lib.judge.sealed import refuse_unsealed  # noqa: E402

    c.Autograde.autograde_preprocessors = refuse_unsealed()

# Feedback: one page per student and notebook, made for the student (each exercise by
# its function's name, each test passed or failed with its message, written answers with
# the grader's comment), never the hidden tests' code, and the maths rendered without
# internet (MathJax inlined): see course_lib/instructor/feedback.py.
from course_lib.instructor import feedback as _feedback  # noqa: E402

# Only on the feedback's own exporter: the formgrader draws its grading pages with
# HTMLExporter and this same config.
c.GenerateFeedback.preprocessors = _feedback.feedback_preprocessors()
c.GenerateFeedback.exporter_class = _feedback.FeedbackExporter
c.FeedbackExporter.template_name = _feedback.TEMPLATE_NAME
c.FeedbackExporter.template_file = _feedback.TEMPLATE_FILE
c.FeedbackExporter.extra_template_basedirs = _feedback.template_basedirs()
