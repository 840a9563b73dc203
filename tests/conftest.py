from __future__ import annotations

import os

from tests.support import aws_test_environment

os.environ.update(aws_test_environment())
