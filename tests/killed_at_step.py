"""A torchrun entry for tests: `gemfuse ARGS`, except that when rank 0 has logged step $KILL_AT_STEP it sends
SIGKILL to the agent and every rank at once, as when a machine goes down: the moment is the test's choice, not
a race between a poll and the run."""

import os

import psutil

from gemfuse.cli import main
from gemfuse.tune.run_writer import RunWriter

KILL_AT = int(os.environ["KILL_AT_STEP"])
logged = RunWriter.stepped


def stepped_then_killed(self, setup, state, loss, norm) -> None:
    logged(self, setup, state, loss, norm)
    if setup.main and state.step == KILL_AT:
        agent = psutil.Process(os.getppid())
        ranks = [p for p in agent.children(recursive=True) if p.pid != os.getpid()]
        for process in [*ranks, agent, psutil.Process()]:  # this rank last: it is the one sending
            process.kill()


RunWriter.stepped = stepped_then_killed  # type: ignore[method-assign]
main()
