"""The documents that are generated from the code stay current."""
import pathlib

from influence_ssl.runs.flags import markdown_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cli_manual_lists_every_configuration_flag_with_its_presets():
    text = (ROOT / "docs" / "cli.md").read_text()
    begin, end = "<!-- flags:begin -->\n", "\n<!-- flags:end -->"
    assert begin in text and end in text
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == markdown_table(), "docs/cli.md is stale: paste influence_ssl.runs.flags.markdown_table() there"
