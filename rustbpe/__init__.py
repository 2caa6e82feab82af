"""rustbpe: byte-level BPE training in Rust (PyO3), API-compatible with the rustbpe 0.1 package."""
from ._rustbpe import *  # noqa: F401,F403
