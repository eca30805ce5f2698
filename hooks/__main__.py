"""`python -m hooks`: the command line (serve, plan, verify)."""

from hooks.cli import main

raise SystemExit(main())
