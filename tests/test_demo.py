"""lightpipe demo: each task's page in-process, and the real page driven in headless Chromium
(Debian's chromium through Playwright; every request to anything but 127.0.0.1 is blocked and
recorded)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lightpipe
from lightpipe.demo import build_demo, page_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3)


class FakePipe:
    """A stand-in with a task and canned results, for the pages of tasks whose pipelines
    have their own tests: what is checked here is the page's mapping to gradio values."""

    def __init__(self, task: str, result, mask_token: str = "[MASK]"):
        self.task, self.result, self.calls = task, result, []
        self.model = SimpleNamespace(name_or_path="fake/model")
        self.tokenizer = SimpleNamespace(mask_token=mask_token)

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def test_pages_fit_their_tasks(classifier, minilm_path, vision_model):
    pipe = lightpipe.pipeline("text-classification", model=str(classifier))
    scores = page_for(pipe).run("I love this movie!")
    expected = pipe("I love this movie!", top_k=None)
    assert scores == {entry["label"]: entry["score"] for entry in expected}
    assert len(scores) == 3

    encoder = lightpipe.pipeline("feature-extraction", model=str(minilm_path))
    table = page_for(encoder).run("A man is eating food.\n\nA man is eating bread.\nA woman plays the violin.")
    names = ["[1] A man is eating food.", "[2] A man is eating bread.", "[3] A woman plays the violin."]
    assert table["headers"] == ["sentence"] + names  # headed by the sentences, not 1 2 3
    assert [row[0] for row in table["data"]] == names
    values = torch.tensor([row[1:] for row in table["data"]])
    torch.testing.assert_close(values.diagonal(), torch.ones(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(values, values.T)
    assert values[0, 1] > values[0, 2] + 0.3  # eating ~ eating, not ~ violin

    ner = FakePipe("token-classification", [
        {"entity_group": "PER", "score": 0.99, "word": "Sarah", "start": 11, "end": 16},
        {"entity_group": "LOC", "score": 0.98, "word": "London", "start": 31, "end": 37}])
    text = "My name is Sarah and I live in London."
    assert page_for(ner).run(text) == {"text": text, "entities": [
        {"entity": "PER", "start": 11, "end": 16}, {"entity": "LOC", "start": 31, "end": 37}]}
    assert ner.calls[0][1] == {"aggregation_strategy": "simple"}

    qa = FakePipe("question-answering", {"score": 0.75, "start": 34, "end": 40, "answer": "Berlin"})
    marked = page_for(qa).run("Where do I live?", "My name is Wolfgang and I live in Berlin.")
    assert marked["entities"] == [{"entity": "answer 0.75", "start": 34, "end": 40}]

    zero_shot = FakePipe("zero-shot-classification", {"sequence": "x", "labels": ["travel", "cooking"],
                                                      "scores": [0.9, 0.1]})
    assert page_for(zero_shot).run("x", "travel, cooking,") == {"travel": 0.9, "cooking": 0.1}
    assert zero_shot.calls[0][1] == {"candidate_labels": ["travel", "cooking"]}

    fill = FakePipe("fill-mask", [{"token_str": "capital", "score": 0.8, "token": 1, "sequence": "s"},
                                  {"token_str": "heart", "score": 0.1, "token": 2, "sequence": "s"}], "<mask>")
    fill_page = page_for(fill)
    assert fill_page.inputs[0][1]["label"] == "Text with <mask>"
    assert fill_page.run("Paris is the <mask> of France.") == {"capital": 0.8, "heart": 0.1}

    generator = FakePipe("text-generation", [{"generated_text": "Once upon a time, there"}])
    assert page_for(generator).run("Once upon a time", 12.0) == "Once upon a time, there"
    assert generator.calls[0][1] == {"max_new_tokens": 12}

    with pytest.raises(ValueError, match="no page for the 'keypoint-matching' task"):
        page_for(FakePipe("keypoint-matching", None))
    interface = build_demo(pipe)
    assert type(interface).__name__ == "Interface"
    assert interface.title == f"lightpipe · text-classification · {classifier.name}"  # not a full path
    from lightpipe.demo import short_name

    assert short_name("/root/.cache/huggingface/hub/models--org--tiny-bert/snapshots/abc") == "org/tiny-bert"
    assert short_name("/data/models/my-bert/") == "my-bert" and short_name("org/model") == "org/model"
    vision = build_demo(lightpipe.pipeline("image-classification", model=str(vision_model("vit", "AutoModelForImageClassification"))))
    assert vision.examples and str(vision.examples[0][0]).endswith(".png")  # image pages have an example


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUESTION = "what colour is it?"


@contextmanager
def _demo_server(task: str, model: Path):
    """``lightpipe demo TASK --model M`` in a subprocess on a free loopback port; yields a
    function that waits for the server and returns its URL; stops the server with Ctrl+C."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "lightpipe", "demo", task, "--model", str(model),
                                "--port", str(_free_port())],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            if "Running on local URL" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        def url() -> str:
            assert ready.wait(90) and process.poll() is None, "".join(output)
            return re.search(r"(http://127\.0\.0\.1:\d+)", "".join(output))[1]

        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for the module's pages; each test opens its own page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1100, "height": 700})
        try:
            yield browser
        finally:
            browser.close()


def _drive_page(browser, url: str, screenshot: Path, texts: dict[str, str], files: dict[str, Path],
                output: str, text_output: bool) -> tuple[str | tuple[str, str], list[str]]:
    """Open the demo page with every request outside 127.0.0.1 blocked, fill the text boxes
    (by label) and upload the files (into the input blocks with those labels), press Submit,
    wait for the output labelled ``output`` (a text box if ``text_output``, else label bars)
    to show a result, take a full-page screenshot; returns (the text box's value, or the bars'
    headline and the bars block's text; the blocked requests)."""
    blocked: list[str] = []
    page = browser.new_page()
    try:
        def loopback_only(route) -> None:
            if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        page.route("**/*", loopback_only)
        page.goto(url, wait_until="networkidle", timeout=30_000)
        for label, path in files.items():
            block = page.locator(".block", has=page.get_by_test_id("block-label").filter(has_text=label)).first
            preview = block.locator("img, audio")  # an image block's picture, an audio block's player
            assert preview.count() == 0, f"the {label} block shows something before the upload"
            with page.expect_response(lambda response: "/upload" in response.url, timeout=30_000):
                block.locator("input[type=file]").set_input_files(str(path))
            preview.first.wait_for(state="attached", timeout=30_000)  # the upload is in
        for label, value in texts.items():
            page.get_by_label(label).first.fill(value)
        page.get_by_role("button", name="Submit").click()
        if text_output:
            box = page.get_by_label(output).last
            page.wait_for_function("box => box.value !== ''", arg=box.element_handle(), timeout=30_000)
            shown = box.input_value()
        else:
            target = page.locator(".block", has=page.get_by_test_id("block-label").filter(has_text=output)).last
            headline = target.get_by_test_id("label-output-value")
            headline.wait_for(timeout=30_000)
            shown = (headline.inner_text().strip(), target.inner_text())
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return shown, blocked


def _percent_rows(shown: str) -> dict[str, str]:
    """A Label block's text (headline, then label / percent lines) -> {label: "NN"}."""
    lines = [line.strip() for line in shown.splitlines() if line.strip()]
    return {lines[i - 1]: match[1] for i, line in enumerate(lines)
            if i and (match := re.fullmatch(r"(\d+)%", line))}


# modality -> (task, how to get its model, text boxes, uploads, output label)
MODALITIES = {
    "text": ("text-classification", lambda get: get("classifier"),
             {"Text": "I love this movie!"}, {}, "Labels"),
    "image": ("image-classification",
              lambda get: get("vision_model")("vit", "AutoModelForImageClassification"),
              {}, {"Image": lambda get: get("test_images")["rgb_jpeg"]}, "Labels"),
    "audio": ("automatic-speech-recognition", lambda get: get("wav2vec2_folder")(),
              {}, {"Audio": lambda get: get("speech_files")["wav"]}, "Transcript"),
    "multimodal": ("visual-question-answering", lambda get: get("vilt_checkpoint")(),
                   {"Question": QUESTION}, {"Image": lambda get: get("test_images")["rgb_jpeg"]}, "Labels"),
}


def _in_process(task: str, model: Path, texts: dict[str, str], files: dict[str, Path]):
    """What lightpipe's pipeline gives for the page's input, run here: {label: score} or text."""
    pipe = lightpipe.pipeline(task, model=str(model))
    if task == "text-classification":
        return {r["label"]: r["score"] for r in pipe(texts["Text"], top_k=None)}
    if task == "image-classification":
        return {r["label"]: r["score"] for r in pipe(str(files["Image"]), top_k=5)}
    if task == "automatic-speech-recognition":
        return pipe(str(files["Audio"]))["text"]
    from PIL import Image

    answers = pipe(image=Image.open(files["Image"]), question=texts["Question"], top_k=5)
    return {a["answer"]: a["score"] for a in answers}


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_demo_in_headless_chromium(modality, chromium, request, tmp_path):
    """Each modality's page, served by ``lightpipe demo`` and driven in headless Chromium:
    the page shows what the pipeline answers for the same input, and a screenshot is kept."""
    task, model_of, texts, uploads, output = MODALITIES[modality]
    get = request.getfixturevalue
    model = model_of(get)
    files = {label: Path(path_of(get)) for label, path_of in uploads.items()}
    screenshot = tmp_path / f"demo-{modality}.png"
    with _demo_server(task, model) as url:
        expected = _in_process(task, model, texts, files)  # while the server starts
        shown, blocked = _drive_page(chromium, url(), screenshot, texts, files, output,
                                     text_output=isinstance(expected, str))

    if isinstance(expected, str):
        assert expected and shown == expected
    else:
        headline, bars = shown
        assert headline == max(expected, key=expected.get), bars
        assert _percent_rows(bars) == {label: str(round(score * 100)) for label, score in
                                       sorted(expected.items(), key=lambda kv: -kv[1])[:5]}, bars
    assert blocked == [], f"the page tried to reach outside the machine: {blocked}"
    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, len(data)
    print(f"screenshot ({modality}, {task}): {screenshot}")
    if os.environ.get("LIGHTPIPE_DEMO_SCREENSHOTS"):
        keep = Path(os.environ["LIGHTPIPE_DEMO_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, keep / screenshot.name)
        print(f"copied to {keep / screenshot.name}")


def test_step09_example_prints_what_the_page_shows(classifier):
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "step09_web_demo.py"), "--model",
                           str(classifier), "--no-launch"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.split("page shows: ", 1)[1])
    expected = lightpipe.pipeline("text-classification", model=str(classifier))("I love this movie!", top_k=None)
    assert shown == pytest.approx({entry["label"]: entry["score"] for entry in expected}, abs=1e-6)


def test_image_audio_and_seq2seq_pages(vision_model, test_images, wav2vec2_folder, speech_files):
    """The pages of the other modalities, on tiny real pipelines: what a page shows is what
    the pipeline answers."""
    from PIL import Image

    image = Image.open(test_images["rgb_jpeg"])
    classify = lightpipe.pipeline("image-classification",
                                  model=str(vision_model("vit", "AutoModelForImageClassification")))
    bars = page_for(classify).run(image)
    assert bars == {r["label"]: r["score"] for r in classify(image, top_k=5)} and bars

    detector = lightpipe.pipeline("object-detection",
                                  model=str(vision_model("detr", "AutoModelForObjectDetection")))
    shown, boxes = page_for(detector).run(image, 0.0)
    found = detector(image, threshold=0.0)
    assert shown is image and len(boxes) == len(found) > 0
    first = found[0]["box"]
    assert boxes[0][0] == (first["xmin"], first["ymin"], first["xmax"], first["ymax"])

    clip = lightpipe.pipeline("zero-shot-image-classification",
                              model=str(vision_model("clip", "AutoModel")))
    scores = page_for(clip).run(image, "a cat, a dog,")
    assert set(scores) == {"a cat", "a dog"}
    assert scores == {r["label"]: r["score"] for r in clip(image, candidate_labels=["a cat", "a dog"])}

    features = lightpipe.pipeline("image-feature-extraction", model=str(vision_model("vit", "AutoModel")))
    shown = page_for(features).run(image)
    assert shown["shape"] == list(torch.as_tensor(features(image, return_tensors=True)).shape)

    asr = lightpipe.pipeline("automatic-speech-recognition", model=str(wav2vec2_folder()))
    assert page_for(asr).run(str(speech_files["wav"])) == asr(str(speech_files["wav"]))["text"]
    sounds = lightpipe.pipeline("audio-classification",
                                model=str(wav2vec2_folder("AutoModelForAudioClassification")))
    assert page_for(sounds).run(str(speech_files["wav"])) == {
        r["label"]: r["score"] for r in sounds(str(speech_files["wav"]), top_k=5)}

    for task, key in (("summarization", "summary_text"), ("translation", "translation_text"),
                      ("text2text-generation", "generated_text")):
        fake = FakePipe(task, [{key: "out"}])
        assert page_for(fake).run("in") == "out" and fake.calls[0][0] == ("in",)


def test_multimodal_and_dense_pages(captioner, vilt_checkpoint, swin2sr_checkpoint, dense_model,
                                    layoutlm_model, document_image):
    """image-to-text, VQA, document QA, image-to-image, depth and segmentation pages show what
    their pipelines return."""
    from PIL import Image

    image = Image.new("RGB", (48, 40), (120, 60, 30))
    caption = lightpipe.pipeline("image-to-text", model=captioner())
    assert page_for(caption).run(image) == caption(image)[0]["generated_text"]
    vqa = lightpipe.pipeline("visual-question-answering", model=vilt_checkpoint())
    answers = vqa(image=image, question="what colour is it?", top_k=5)
    assert page_for(vqa).run(image, "what colour is it?") == {a["answer"]: a["score"] for a in answers}
    docqa = lightpipe.pipeline("document-question-answering", model=layoutlm_model())
    page = Image.open(document_image)
    found = docqa(image=page, question="What is the invoice number?", top_k=3)
    found = found if isinstance(found, list) else [found]
    assert page_for(docqa).run(page, "What is the invoice number?") == {f["answer"]: f["score"] for f in found}
    upscale = lightpipe.pipeline("image-to-image", model=swin2sr_checkpoint())
    assert page_for(upscale).run(image).size == upscale(image).size
    depth = lightpipe.pipeline("depth-estimation", model=dense_model("dpt", "DPTForDepthEstimation"))
    assert page_for(depth).run(image).tobytes() == depth(image)["depth"].tobytes()
    segment = lightpipe.pipeline("image-segmentation",
                                 model=dense_model("segformer", "SegformerForSemanticSegmentation"))
    shown, parts = page_for(segment).run(image)
    assert shown is image and [label for _, label in parts] == [s["label"] for s in segment(image)]


def test_video_page(videomae_checkpoint, video_files):
    classify = lightpipe.pipeline("video-classification", model=videomae_checkpoint())
    path = str(video_files["main"])
    assert page_for(classify).run(path) == {r["label"]: r["score"] for r in classify(path, top_k=5)}


def test_zero_shot_detection_page(owlvit_folder):
    from PIL import Image

    detector = lightpipe.pipeline("zero-shot-object-detection", model=owlvit_folder)
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    shown, boxes = page_for(detector).run(image, "a cat, a dog,", 0.0)
    found = detector(image, candidate_labels=["a cat", "a dog"], threshold=0.0)
    assert shown is image and [label for _, label in boxes] == \
        [f"{d['label']} {d['score']:.2f}" for d in found]
