"""Configuration fields that carry their command-line flag: one definition of each name, help and default.

A dataclass field made by `option` holds, in its metadata, the help text, the choices, and the flag's name
when it differs from the field's (FixMatch's --batch for `labeled_batch`, say). `influence_ssl.runs.flags`
turns such fields into absl flags; nothing here imports absl.
"""
import dataclasses

DERIVED = "derived"  # the `flag` of a field that is computed from others and has no flag of its own


def option(default, help, *, flag=None, choices=None, **kwargs):
    """A dataclass field with `default` (or `default_factory` in kwargs) and its flag's help and choices."""
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices is not None else None}
    if "default_factory" in kwargs:
        return dataclasses.field(metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def flag_name(field):
    """The flag of a dataclass field: its own name unless the metadata names another (or DERIVED)."""
    return field.metadata.get("flag") or field.name


def help_of(field):
    return field.metadata.get("help", "")


def choices_of(field):
    return field.metadata.get("choices")
