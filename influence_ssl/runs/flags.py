"""absl flags generated from RunConfig: one flag per configuration leaf, defined once, named and documented
by the field (influence_ssl.fields.option).

Every generated flag defaults to None, meaning "from the presets" (influence_ssl.runs.presets); the value a
run takes is in its saved configuration. An entry point calls `define()` once at import and `from_flags()`
in its main; several entry points can live in one process (a test, a notebook), as nothing is redefined and
no default is changed at import.
"""
from absl import flags

from influence_ssl.runs import checks, presets
from influence_ssl.runs.config import leaves
from influence_ssl.trainer.config import ConfigError

FLAGS = flags.FLAGS


def define(flag_values=FLAGS):
    """Define every configuration flag not yet defined in `flag_values`."""
    for name, (_, field) in leaves().items():
        if name in flag_values:
            continue
        help_text = field.metadata.get("help", "") + " (default: the preset's)"
        choices = field.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(name, None, list(choices), help_text, flag_values=flag_values)
        elif field.type is bool:
            flags.DEFINE_bool(name, None, help_text, flag_values=flag_values)
        elif field.type is int:
            flags.DEFINE_integer(name, None, help_text, flag_values=flag_values)
        elif field.type is float:
            flags.DEFINE_float(name, None, help_text, flag_values=flag_values)
        elif field.type is tuple:
            flags.DEFINE_list(name, None, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, None, help_text, flag_values=flag_values)


def explicit_values(flag_values=FLAGS, defaults=None):
    """{flag: value} of the configuration flags given (not None), over an entry point's `defaults`
    (e.g. experiments.synthetic's dataset=moons): the input of presets.resolve."""
    values = dict(defaults or {})
    for name, (_, field) in leaves().items():
        value = flag_values[name].value if name in flag_values else None
        if value is None:
            continue
        if field.type is tuple:
            value = _ints(name, value)
        values[name] = value
    return values


def _ints(name, values):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{name} must be class numbers, got {','.join(values)}.") from None


def from_flags(flag_values=FLAGS, defaults=None):
    """The checked RunConfig of the command line (ConfigError, one line, for a value that cannot run)."""
    explicit = explicit_values(flag_values, defaults)
    config = presets.resolve(explicit)
    checks.check(config, explicit)
    return config


# The presets shown in docs/cli.md, one column each.
DOC_PRESETS = {"digits (default)": {}, "FixMatch, CIFAR-10": {"dataset": "cifar10", "algorithm": "fixmatch"},
               "UDA, CIFAR-10": {"dataset": "cifar10", "algorithm": "uda"}, "2-D (Sec. 4.1)": {"dataset": "moons"},
               "IMDb": {"dataset": "imdb"}}


def markdown_table():
    """The configuration flags as a Markdown table with each preset's value (docs/cli.md holds it; a test
    keeps the two equal)."""
    from influence_ssl.runs.config import value_of

    resolved = {name: presets.resolve(explicit) for name, explicit in DOC_PRESETS.items()}
    lines = ["| flag | " + " | ".join(DOC_PRESETS) + " | help |", "|---" * (len(DOC_PRESETS) + 2) + "|"]
    for name, (_, field) in leaves().items():
        values = " | ".join(f"`{value_of(config, name)!r}`" for config in resolved.values())
        choices = field.metadata.get("choices")
        help_text = field.metadata.get("help", "") + (f" One of: {', '.join(choices)}." if choices else "")
        lines.append(f"| `--{name}` | {values} | {help_text.replace('|', '/')} |")
    return "\n".join(lines)
