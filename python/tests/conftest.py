import sys
from pathlib import Path

# Tests import the package from the source tree (the extension bundles it the same way: by PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import small_config  # noqa: F401  (a fixture shared by the model and memory tests)
