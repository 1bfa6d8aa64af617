"""The chaos suite (issue 9): faults against real workers and a real Redis, classified results.

Layout: ``ledger`` (bookkeeping outside the fault domain), ``procs`` (worker processes and
signals), ``proxy`` (a loopback TCP proxy that cuts Redis off), ``offset_clock`` (a launcher that
shifts a process's wall clock), ``chaos_app`` (the jobs the workers run), ``scenarios/`` (one
module per scenario, shared with the long runs in ``bench/chaos``) and the ``test_*`` modules that
run each scenario scaled down for CI.
"""
