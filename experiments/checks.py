"""Checks the entry points share: they turn bad input into one-line ConfigErrors."""
import os
import sys
import tempfile

from influence_ssl.trainer import ConfigError


def writable_dir(path, flag="--train_dir"):
    """Create `path` if needed; ConfigError (one line) if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
        # A name of its own: several runs may check one directory at the same moment.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as e:
        raise ConfigError(f"Cannot write to {flag}={path!r}: {e.strerror or e}.") from None
    return path


def parse_flags(argv):
    """absl's flag parsing, with a bad flag (an unknown name, a value out of its choices or not a number) as one
    line `error: ...` and exit code 2, like every other refusal (absl's own prints two lines, exit code 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run_main(main, *errors, **run_kwargs):
    """absl's app.run(main, **run_kwargs), with a bad flag (parse_flags), ConfigError and `errors` printed as one
    line `error: ...` and exit code 2: bad input is the user's to fix, and a traceback is for bugs only."""
    from absl import app

    run_kwargs.setdefault("flags_parser", parse_flags)
    try:
        app.run(main, **run_kwargs)
    except (ConfigError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
