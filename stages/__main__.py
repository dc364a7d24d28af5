"""``python -m stages <stage> ARGS``: run one stage, in a fork of a warm server (nnpipe.warm)."""
from nnpipe import warm

warm.main()
