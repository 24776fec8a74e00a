"""The commit a result records: '-dirty' for a changed source file, not for a regenerated result; and the CPU
it was made on."""
import platform
import subprocess

import pytest

from influence_ssl.runs.provenance import cpu_model, git_commit


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "study.json").write_text("{}\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return tmp_path, sha


def test_a_clean_checkout_records_its_head(checkout):
    root, sha = checkout
    assert git_commit(str(root)) == sha


def test_a_changed_source_file_is_dirty(checkout):
    root, sha = checkout
    (root / "code.py").write_text("x = 2\n")
    assert git_commit(str(root)) == sha + "-dirty"


def test_a_rewritten_result_and_an_untracked_file_are_not(checkout):
    root, sha = checkout
    (root / "results" / "study.json").write_text('{"seeds": [0]}\n')
    (root / "notes.txt").write_text("scratch\n")
    assert git_commit(str(root)) == sha


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(str(tmp_path)) is None


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n")
    assert cpu_model(str(cpuinfo)) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert cpu_model(str(tmp_path / "absent")) == (platform.processor() or None)
