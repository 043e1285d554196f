"""``python -m course_lib.instructor.report RESULTS_JSON [-o OUT_HTML] [--title T]``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
