"""``python -m genlab.cli``: the ``genlab`` command (as under ``accelerate launch -m genlab.cli``)."""

from genlab.cli import main

main()
