"""`cnnbook.files`: a file is replaced whole or not at all, and no temporary file stays behind."""

import os

import pytest

from cnnbook.files import replaced_atomically, write_text_atomically


def test_the_new_text_replaces_the_old_and_nothing_else_is_left(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("old")
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, error):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises(type(error)):
        with replaced_atomically(target, "wb") as f:
            f.write(b"half of a new")
            raise error
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_new_file_gets_the_permissions_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "grades.csv", "a,b\n")
    finally:
        os.umask(old)
    assert (tmp_path / "grades.csv").stat().st_mode & 0o777 == 0o644


def test_only_write_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with replaced_atomically(tmp_path / "x", "a"):
            pass
