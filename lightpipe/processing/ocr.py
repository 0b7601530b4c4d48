"""OCR: the words of a document image and their boxes, from the ``tesseract`` program.

Gives what transformers' ``apply_tesseract`` (document-question-answering, through pytesseract)
gives: tesseract's TSV words in reading order, blank ones dropped, each box
``(left, top, left + width, top + height)`` normalised to 0-1000 by the image's width and
height. We run the ``tesseract`` binary ourselves (no pytesseract): the image is written as a
PNG file, as pytesseract writes it, and the TSV is read from tesseract's standard output.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from PIL import Image

# The program's name, looked up on PATH (set TESSERACT_CMD to a full path to use another).
TESSERACT = "tesseract"

_INSTALL_HINT = ("install tesseract-ocr (Debian/Ubuntu: apt-get install tesseract-ocr; macOS: "
                 "brew install tesseract), or pass word_boxes= (a list of (word, [x0, y0, x1, y1]) "
                 "pairs, boxes normalised to 0-1000) so that no OCR is needed")


class TesseractNotFoundError(InputError):
    """The ``tesseract`` program is not installed (or not on PATH)."""


def tesseract_command() -> str:
    """The full path of the tesseract program, or a clear error naming how to get it."""
    name = os.environ.get("TESSERACT_CMD") or TESSERACT
    found = shutil.which(name)
    if found is None:
        raise TesseractNotFoundError(
            f"Reading the words of a document image needs the tesseract OCR program, and "
            f"{name!r} was not found on PATH: {_INSTALL_HINT}.")
    return found


def run_tesseract(image: "Image.Image", lang: str | None = None, config: str | None = "") -> str:
    """Run tesseract on a PIL image; return its TSV output (one row per page, block,
    paragraph, line and word)."""
    from PIL import Image

    command = tesseract_command()
    if "A" in image.getbands():  # as pytesseract: transparency becomes a white background
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, (0, 0), image.getchannel("A"))
        image = background
    with tempfile.TemporaryDirectory(prefix="lightpipe_ocr_") as folder:
        path = os.path.join(folder, "page.png")
        image.save(path, format="PNG")
        args = [command, path, "stdout"]
        if lang:
            args += ["-l", lang]
        args += ["-c", "tessedit_create_tsv=1", *shlex.split((config or "").strip())]
        try:
            result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True)
        except OSError as err:
            raise TesseractNotFoundError(f"Could not run {command}: {err}; {_INSTALL_HINT}.") from None
    if result.returncode:
        lines = result.stderr.decode("utf-8", "replace").splitlines()
        message = " ".join(line.strip() for line in lines if line.strip()).rstrip(".")
        hint = ""
        if lang and "language" in message.lower():
            hint = (f" The language data for {lang!r} may be missing: install it (Debian/Ubuntu: "
                    f"apt-get install tesseract-ocr-{lang.split('+')[0]}) or pass another lang=.")
        raise InputError(f"tesseract failed (exit status {result.returncode}): {message}.{hint} "
                         "Check lang= and tesseract_config=.")
    return result.stdout.decode("utf-8")


def parse_tsv(tsv: str) -> list[dict]:
    """Tesseract's TSV -> one dict per row: the numeric columns as ints, ``text`` as a string."""
    lines = tsv.strip().split("\n")
    if len(lines) < 2:
        return []
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) == len(header) - 1:  # a blank last word loses its final cell
            cells.append("")
        if len(cells) != len(header):
            continue
        row = {}
        for name, cell in zip(header, cells):
            if name == "text":
                row[name] = cell
            else:
                try:
                    row[name] = int(float(cell))
                except ValueError:
                    row[name] = cell
        rows.append(row)
    return rows


def normalize_box(box: list[int], width: int, height: int) -> list[int]:
    """Pixel box (x0, y0, x1, y1) -> the same box on a 0-1000 grid (truncated, as the
    reference)."""
    return [int(1000 * (box[0] / width)), int(1000 * (box[1] / height)),
            int(1000 * (box[2] / width)), int(1000 * (box[3] / height))]


def apply_tesseract(image: "Image.Image", lang: str | None = None,
                    tesseract_config: str | None = "") -> tuple[list[str], list[list[int]]]:
    """A document image -> (words, boxes normalised to 0-1000), blank words dropped."""
    width, height = image.size
    words, boxes = [], []
    for row in parse_tsv(run_tesseract(image, lang, tesseract_config)):
        text = row.get("text", "")
        if not isinstance(text, str) or not text.strip():
            continue
        left, top = row["left"], row["top"]
        words.append(text)
        boxes.append(normalize_box([left, top, left + row["width"], top + row["height"]],
                                   width, height))
    return words, boxes
