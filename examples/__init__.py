"""Example apps: ``python -m examples.jobs``, ``python -m examples.chat`` (from the repository
root), or ``pserve examples/jobs/development.ini`` from anywhere."""
