"""``python -m stages <stage> ARGS``: run one stage, in a fork of a warm server (warmstart)."""
from warmstart import launcher

launcher.main()
