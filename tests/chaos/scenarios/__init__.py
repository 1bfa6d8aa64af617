"""One module per scenario. Each exposes a function that runs it on a rig with the sizes it is
given and returns its figures as a dict; the tests run them small with fast settings and assert,
``bench/chaos/run.py`` runs them full size with shipping defaults and records the figures."""
