"""The checked, atomic writer of exports and reports: a failed write leaves the old file and nothing beside it."""

import pytest

from studies.files import OutputError, checked_output, write_atomically


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


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/dev/null", "cannot write /dev/null: it is not a regular file; pass a file path"),  # root would replace the device
        ("/proc/x", "cannot write /proc/x: no such file or directory in /proc; choose another -o path"),  # whatever its modes say
    ],
)
def test_an_output_no_file_can_be_written_to_is_refused_before_writing(output, message):
    with pytest.raises(OutputError) as raised:
        checked_output(output)
    assert str(raised.value) == message
