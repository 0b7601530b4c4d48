"""lightpipe.logging: verbosity as transformers.logging has it, the LIGHTPIPE_VERBOSITY
environment variable, and INFO messages that say what was loaded from where."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import lightpipe
from lightpipe.errors import ConfigError


@pytest.fixture()
def restore_level():
    logger = logging.getLogger("lightpipe")
    level = logger.level
    yield
    logger.setLevel(level)


def test_set_verbosity_functions(restore_level):
    log = lightpipe.logging
    for setter, level in ((log.set_verbosity_error, logging.ERROR), (log.set_verbosity_info, logging.INFO),
                          (log.set_verbosity_debug, logging.DEBUG), (log.set_verbosity_warning, logging.WARNING)):
        setter()
        assert log.get_verbosity() == level
    log.set_verbosity("error")
    assert log.get_verbosity() == logging.ERROR
    with pytest.raises(ConfigError, match="Unknown verbosity 'loud'"):
        log.set_verbosity("loud")
    assert log.get_logger() is logging.getLogger("lightpipe")


def test_info_says_what_was_loaded_from_where(tiny_model, caplog, restore_level):
    folder = tiny_model("bert", "AutoModelForSequenceClassification", num_labels=2)
    lightpipe.logging.set_verbosity_info()
    with caplog.at_level(logging.INFO, logger="lightpipe"):
        lightpipe.pipeline("text-classification", model=str(folder))
    text = caplog.text
    assert "text-classification" in text and str(folder) in text and "BertForSequenceClassification" in text


def _run(code: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_environment_variable_sets_the_level_and_shows_info():
    code = ("import logging, lightpipe; print(logging.getLogger('lightpipe').getEffectiveLevel()); "
            "logging.getLogger('lightpipe').info('hello from lightpipe')")
    done = _run(code, LIGHTPIPE_VERBOSITY="info")
    assert done.stdout.strip() == str(logging.INFO), done.stderr
    assert "hello from lightpipe" in done.stderr  # our handler prints INFO when nothing else does
    quiet = _run("import logging, lightpipe; logging.getLogger('lightpipe').warning('w')",
                 LIGHTPIPE_VERBOSITY="error")
    assert quiet.returncode == 0 and quiet.stderr.strip() == ""
    odd = _run("import lightpipe", LIGHTPIPE_VERBOSITY="loud")
    assert odd.returncode == 0 and "LIGHTPIPE_VERBOSITY" in odd.stderr
