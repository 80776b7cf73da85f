"""The `hf-posenc` console script. It lives outside the hf_posenc package so that `hf-posenc --help` answers at once.

`import hf_posenc` registers the converted model classes with transformers' Auto classes, which imports torch and
transformers' modeling code: seconds. `hf_posenc/cli.py` imports nothing heavy at module level, so this loads it
without running the package's `__init__` first. A command imports hf_posenc when it runs (through the `from .x
import y` lines in its body); `--help`, `--version`-style usage and usage errors never do.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys


def run() -> None:
    module = sys.modules.get("hf_posenc.cli")
    if module is None and "hf_posenc" in sys.modules:
        import hf_posenc.cli as module
    if module is None:
        package = importlib.util.find_spec("hf_posenc")  # finds the package without importing it
        locations = package.submodule_search_locations if package else None
        spec = importlib.machinery.PathFinder.find_spec("hf_posenc.cli", locations) if locations else None
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError("hf_posenc is not installed", name="hf_posenc")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]
            raise
    module.run()
