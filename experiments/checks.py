"""Checks the entry points share: they turn bad input into one-line ConfigErrors."""
import os

from influence_ssl.trainer import ConfigError


def writable_dir(path, flag="--train_dir"):
    """Create `path` if needed; ConfigError (one line) if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"Cannot write to {flag}={path!r}: {e.strerror or e}.") from None
    return path
