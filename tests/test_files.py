"""The checked, atomic writer of exports and reports: a failed write leaves the old file and nothing beside it."""

import pytest

from studies.files import write_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old: 1\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "new: \udc80\n")  # a lone surrogate cannot be written as UTF-8: the write fails midway
    assert path.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "report.html"
    write_atomically(path, "first")
    write_atomically(path, "second")
    assert path.read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
