"""Fault-suite helpers on the import path: the data layouts and the tiny program config."""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (_TESTS, os.path.join(_TESTS, 'data')):
  if _path not in sys.path:
    sys.path.insert(0, _path)
