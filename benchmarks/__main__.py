"""`python -m benchmarks [--quick] [--sections ...] [--markdown PATH]`: see `benchmarks.runner`."""

import sys

from benchmarks.runner import main

sys.exit(main())
