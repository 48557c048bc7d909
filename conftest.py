"""Settings for every pytest run from the repository root: the unit tests (``tests/conftest.py`` adds theirs) and
the lessons through nbval (``make test``, ``make lessons``: ``pytest --nbval-lax --nbval-current-env lessons/``)."""

import os


def pytest_configure(config):
    if getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False):
        # Why lessons failed under load with "Timeout of 5 seconds exceeded waiting for output" (nbval 0.11,
        # nbval/plugin.py, IPyNbCell.runtest): nbval reads only the shell channel while a cell runs
        # (`self.parent.kernel.await_reply(msg_id, timeout=timeout)`) and reads the kernel's IOPub messages
        # afterwards, allowing each one `self.output_timeout = 5` seconds (set in IPyNbCell.__init__) until the
        # cell's final "idle" status. Meanwhile everything the cell published waits in ZeroMQ's queues: 1,000
        # messages in the kernel's PUB and 1,000 in the client's SUB socket (the defaults; neither ipykernel nor
        # jupyter_client raises them) plus what the TCP buffers hold. A PUB socket drops what does not fit; once
        # the "idle" status is dropped, nbval waits for it in vain. Measured here with a cell that sends 6,103
        # small widget messages at once: 2 of 3 runs lost 100-600 of them and the "idle", and failed; a longer
        # output_timeout does not help (30 s: the same failure, 5,981 of 6,103 received), so no hook raises it.
        # The volume comes from fit's progress bar: tqdm's notebook widget sends two comm messages per refresh,
        # one refresh per 0.1 s - lesson 05's training cell sent 1,563 messages in 164 s on a 2-core machine, and
        # on a busier machine it trains longer and sends more. The kernels inherit this environment and tqdm
        # (>= 4.66) reads its defaults from TQDM_* variables: one refresh per 10 s keeps any cell that ends within
        # nbval's 2,000 s cell timeout under 2 x 2,000 / 10 = 400 progress messages, however loaded the machine.
        os.environ.setdefault("TQDM_MININTERVAL", "10")
