import subprocess
import sys

import scalelm


def test_torch_version_gate() -> None:
    assert scalelm.torch_version_ok("2.13.0+cpu")
    assert scalelm.torch_version_ok("2.6.0a0")
    assert not scalelm.torch_version_ok("2.5.1")
    assert not scalelm.torch_version_ok("1.13.1")
    assert not scalelm.torch_version_ok("garbage")


def test_core_imports_nothing_but_torch_and_stdlib() -> None:
    code = (
        "import sys, scalelm; "
        "bad = [m for m in ('transformers', 'lightning', 'numpy', 'safetensors') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
