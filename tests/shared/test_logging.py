import json
import logging

import pytest

from shared.logging import configure_logging, get_logger


def test_log_lines_are_json_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        get_logger("test").info(
            "connected", access_token="IGAA-secret", nested={"client_secret": "s", "ok": 1}, inbox_id=4
        )
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    finally:
        logging.getLogger().setLevel("WARNING")
    assert line["event"] == "connected"
    assert line["access_token"] == "***"
    assert line["nested"] == {"client_secret": "***", "ok": 1}
    assert line["inbox_id"] == 4
    assert "IGAA-secret" not in json.dumps(line)


def test_arqs_job_lines_are_json_once_and_follow_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    from arq.logs import default_log_config

    logging.config.dictConfig(default_log_config(verbose=True))  # what arq's command line does
    try:
        configure_logging("WARNING")
        logging.getLogger("arq.worker").info("job started")
        assert capsys.readouterr().out == ""  # below the level: nothing, in no format
        configure_logging("INFO")
        logging.getLogger("arq.worker").info("job started")
        lines = capsys.readouterr().out.strip().splitlines()
    finally:
        logging.getLogger().setLevel("WARNING")
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "job started"
