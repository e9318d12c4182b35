"""The classroom wing: tools for instructors, not for the chapters.

* `assign`: student copies of chapters, with solutions and hidden tests taken out;
* `grade`: run every submission in its own sandboxed kernel (`sandbox`, `seccomp`,
  `grade_worker`) and write a report no submission can forge (`grade_report`);
* `execute`: run a chapter top to bottom and store its outputs (``make outputs``).

Each is a command of ``python -m cnnbook``; nothing here is imported by ``import cnnbook``.
"""
