"""PEP 517 build backend for the project: maturin, after checking that a Rust toolchain is installed.

`pip install .` compiles the Rust BPE trainer in rustbpe/. Without cargo, maturin would try to download a
toolchain (which fails offline, with a confusing error); this wrapper stops first with a message that says
what to install (nanochat #219).
"""

import shutil
import sys

import maturin

NO_RUST = """
nanochat-workbench builds its BPE trainer (rustbpe/, Rust + PyO3), so the install needs a Rust toolchain,
and `cargo` was not found on PATH.

Install one, then rerun the same pip command:
  - rustup (any OS):    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (then: . ~/.cargo/env)
  - Debian/Ubuntu:      sudo apt install cargo
  - macOS (Homebrew):   brew install rust
"""


def _require_cargo():
    if shutil.which("cargo") is None:
        sys.stderr.write(NO_RUST)
        raise SystemExit(1)


def _checked(hook):
    def wrapper(*args, **kwargs):
        _require_cargo()
        return hook(*args, **kwargs)
    wrapper.__name__ = hook.__name__
    wrapper.__doc__ = hook.__doc__
    return wrapper


get_requires_for_build_wheel = _checked(maturin.get_requires_for_build_wheel)
get_requires_for_build_editable = _checked(maturin.get_requires_for_build_editable)
prepare_metadata_for_build_wheel = _checked(maturin.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _checked(maturin.prepare_metadata_for_build_editable)
build_wheel = _checked(maturin.build_wheel)
build_editable = _checked(maturin.build_editable)
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
build_sdist = maturin.build_sdist
