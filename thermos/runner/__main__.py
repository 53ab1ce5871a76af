"""`python -m thermos.runner` is thermos_runner."""

import sys

from thermos.runner.main import main

sys.exit(main())
