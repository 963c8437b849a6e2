"""``python -m examples.jobs [--port 6543]``: the jobs example on one port."""

from examples._run import load, run

app = load("examples.jobs.app")
run("The jobs example: toggle a job in one tab, see it in every tab.", app.main)
