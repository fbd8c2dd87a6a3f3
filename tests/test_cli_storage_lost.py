"""A storage server lost in the middle of a command: one masked line and exit 1, no traceback."""

import sqlalchemy.exc

from conftest import invoke
from tunectl import results


def test_a_database_error_mid_command_is_one_masked_line(monkeypatch, tmp_path):
    def lost(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError(
            "SELECT 1", {}, Exception("server closed the connection: postgresql://u:s3cret@db:5432/x\nmore"))

    monkeypatch.setattr(results, "open_study", lost)
    result = invoke("show", "night1", "--root", tmp_path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the study storage failed")
    assert "s3cret" not in result.stderr and "***" in result.stderr
    assert "Traceback" not in result.stderr
