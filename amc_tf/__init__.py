"""amc-tf: channel-pruned PyTorch MobileNets to TensorFlow, TF-slim and TFLite.

The conversion pipeline and the benchmark targets live in the checkout's top-level
`converters/` and `benchmarks/` folders but import as `amc_tf.converters` and
`amc_tf.benchmarks` (setup.cfg maps them there in the wheel), so amc-tf installs no
generic top-level names and a user's own `converters/` or `benchmarks/` folder can never
shadow them. In a checkout run without installing (PYTHONPATH=checkout), the lines below
let the same names resolve to those folders.
"""

import os as _os

from amc_tf.core.version import __version__  # noqa: F401

_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "converters")) and _os.path.isfile(
        _os.path.join(_checkout, "converters", "convert.py")):
    __path__.append(_checkout)  # amc_tf.converters -> <checkout>/converters, amc_tf.benchmarks likewise
