"""``python -m onebit``: the ``onebit`` command line (see :mod:`onebit.cli`)."""

from onebit.cli import main

raise SystemExit(main())
