"""`python -m lightpipe`: the same as the `lightpipe` command."""

from .cli import main

raise SystemExit(main())
