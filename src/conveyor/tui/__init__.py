"""Terminal views: rendering pieces shared by the pipeline HUD and ``conveyor top``.

* ``widgets.py``: fill bars, sparklines and number formats (pure functions returning rich
  ``Text``), so a frame can be rendered to a string in tests.
* ``dag.py``: a stage graph drawn as a tree from its sources.
* ``keys.py``: single key presses from a TTY in cbreak mode, restored on exit.
* ``top.py``: ``conveyor top``.
"""
