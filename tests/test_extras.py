"""Without an optional package, the feature that needs it says in one line which extra to
install (issue 22, item 5): in Python (a LightpipeError that is also an ImportError) and in the
CLI (one line, exit 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Block())
""")


def _python(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_an_image_task_without_pillow_names_the_vision_extra(vision_model):
    folder = vision_model("vit", "AutoModelForImageClassification")
    done = _python(f"""
        import lightpipe
        from lightpipe.errors import MissingExtraError
        try:
            lightpipe.pipeline("image-classification", model={str(folder)!r})
        except MissingExtraError as err:
            assert isinstance(err, ImportError)
            print("MESSAGE", err)
    """, ("PIL",))
    assert done.returncode == 0, done.stderr
    assert "pip install 'lightpipe[vision]'" in done.stdout


def test_the_cli_prints_one_line_for_a_missing_extra(vision_model, tmp_path):
    folder = vision_model("vit", "AutoModelForImageClassification")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    done = _python(f"""
        import sys
        from lightpipe.cli import main
        sys.exit(main(["run", "image-classification", "--model", {str(folder)!r}, {str(image)!r}]))
    """, ("PIL",))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("lightpipe: error:") and "lightpipe[vision]" in lines[-1], done.stderr


@pytest.mark.parametrize("module,extra", [("av", "video"), ("soundfile", "audio"), ("gradio", "demo"),
                                          ("starlette", "server"), ("sentencepiece", "sentencepiece")])
def test_every_extra_has_its_message(module, extra):
    from lightpipe.errors import missing_extra

    assert f"lightpipe[{extra}]" in str(missing_extra(module))


def test_audio_files_without_soundfile_or_av_name_the_audio_extra(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF0000WAVEfmt ")
    done = _python(f"""
        from lightpipe.processing.audio_io import decode_audio
        from lightpipe.errors import MissingExtraError
        try:
            decode_audio({str(path)!r})
        except MissingExtraError as err:
            print("MESSAGE", err)
    """, ("soundfile", "av"))
    assert "lightpipe[audio]" in done.stdout, done.stderr


def test_the_all_extra_lists_every_extra():
    import tomllib

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    listed = extras["all"][0].split("[")[1].rstrip("]").split(",")
    assert set(listed) == set(extras) - {"all", "test", "bench"}
