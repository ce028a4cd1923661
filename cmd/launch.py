"""What `cmd/bacalhau` runs, under `python -S`: the CLI without the `site` module.

`site` reads the venv's .pth files at every start, and the editable install's
finder they load imports about 25 ms of modules: most of a bare Python start
(BENCHMARKS.md, "What limits each row"). The CLI needs nothing of `site` but
what it adds: the venv as `sys.prefix`, the venv's packages, and this checkout
(where the editable install points). They go at the end of the path, where
`site` puts them, so PYTHONPATH still comes first.
"""

import os
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
venv = os.path.join(root, ".venv")
sys.prefix = sys.exec_prefix = venv
# Not this folder: as with `python -m`, nothing but the packages is imported from here.
del sys.path[0]
sys.path += [os.path.join(venv, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"), root]

from bacalhau_py.cli.main import main  # noqa: E402 - the path above must be set first

main()
