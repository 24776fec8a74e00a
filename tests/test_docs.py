"""The documents stay current: the generated flag manual, and every link and result file they name."""
import glob
import pathlib
import re

from influence_ssl.runs.flags import markdown_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cli_manual_lists_every_configuration_flag_with_its_presets():
    text = (ROOT / "docs" / "cli.md").read_text()
    begin, end = "<!-- flags:begin -->\n", "\n<!-- flags:end -->"
    assert begin in text and end in text
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == markdown_table(), "docs/cli.md is stale: paste influence_ssl.runs.flags.markdown_table() there"


def documents():
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def expand_braces(pattern):
    """'a_{x,y}.json' -> ['a_x.json', 'a_y.json'] (one level, as the documents write them)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    return [out for option in match.group(1).split(",")
            for out in expand_braces(pattern[:match.start()] + option + pattern[match.end():])]


def named_results(text):
    """Every `results/...` path a document names in code quotes, braces expanded."""
    return [p for quoted in re.findall(r"`(results/[^`\s<>]+)`", text) for p in expand_braces(quoted)]


def test_expand_braces_and_named_results_by_hand():
    assert expand_braces("r/a_{x,y}_{1,2}.json") == ["r/a_x_1.json", "r/a_x_2.json", "r/a_y_1.json", "r/a_y_2.json"]
    assert named_results("see `results/s/{a,b}.json` and `out/x.json`, not results/c.json") == [
        "results/s/a.json", "results/s/b.json"]


def test_every_link_and_every_named_result_file_of_the_documents_exists():
    missing = []
    for doc in documents():
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target.split("#")[0]).exists():
                missing.append(f"{doc.relative_to(ROOT)}: link {target}")
        for path in named_results(text):
            if not glob.glob(str(ROOT / path)):
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(missing)
