"""``lightpipe demo TASK --model M``: a gradio page fitted to the task, as the transformers
tutorial's gradio section builds by hand.

    text-classification, fill-mask, zero-shot   text in -> label bars
    token-classification (ner)                  text in -> highlighted entities
    question-answering                          question + context -> the answer highlighted
    feature-extraction                          sentences (one a line) -> cosine similarity table
    text-generation                             prompt + max new tokens -> text
    summarization, translation, text2text       text in -> text
    image-/audio-classification, ASR            an upload -> label bars or text
    zero-shot-image-classification              image + labels -> label bars
    zero-shot-audio-classification              audio + labels -> label bars
    mask-generation                             image + points per side -> masks over the image
    object-detection                            image + threshold -> boxes drawn on the image
    image-feature-extraction                    image -> the feature tensor's shape and values

Each task is one small ``Page``: its input and output components and a function from the
page's values to the output's value. gradio (the ``demo`` extra) is imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Page:
    inputs: list[tuple[str, dict]]  # (gradio component name, its arguments)
    outputs: list[tuple[str, dict]]
    run: Callable[..., Any]         # the inputs' values -> the outputs' value(s)
    examples: list | None = None
    note: str = ""


def _label_scores(results: Any, label: str = "label", score: str = "score") -> dict[str, float]:
    results = results if isinstance(results, list) else [results]
    if results and isinstance(results[0], list):  # one text's results inside a list
        results = results[0]
    return {str(entry[label]): float(entry[score]) for entry in results}


def _entities(text: str, results: list) -> dict:
    """token-classification results -> gradio HighlightedText's {"text", "entities"}."""
    return {"text": text, "entities": [
        {"entity": entry.get("entity_group", entry.get("entity")), "start": entry["start"],
         "end": entry["end"]} for entry in results if entry.get("start") is not None]}


def _embedding_settings(pipe: Any) -> Any:
    """The pooling the model's sentence-transformers files ask for (read once per pipeline)."""
    from .embeddings import read_settings
    from .hub import resolve

    settings = getattr(pipe, "_demo_embedding_settings", None)
    if settings is None:
        try:
            folder = resolve(pipe.model.name_or_path, weights=False)
        except Exception:  # a model object with no folder: mean pooling
            folder = None
        settings = pipe._demo_embedding_settings = read_settings(folder, pipe.tokenizer)
    return settings


def _similarity_table(pipe: Any, text: str) -> dict:
    """Cosine similarities of the sentences' embeddings, pooled as the model says; the columns
    are headed by the sentences they compare."""
    import torch

    from .embeddings import embed, finish

    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        return {"headers": ["sentence"], "data": []}
    settings = _embedding_settings(pipe)
    vectors = torch.stack([finish(vector, settings) for vector in embed(pipe, sentences, settings)])
    vectors = torch.nn.functional.normalize(vectors, dim=1)
    similarity = (vectors @ vectors.T).tolist()
    short = [sentence if len(sentence) <= 40 else sentence[:39] + "…" for sentence in sentences]
    return {"headers": ["sentence"] + [f"[{i + 1}] {s}" for i, s in enumerate(short)],
            "data": [[f"[{i + 1}] {short[i]}"] + [round(value, 3) for value in row]
                     for i, row in enumerate(similarity)]}


def page_for(pipe: Any) -> Page:
    """The page that fits ``pipe``'s task."""
    task = pipe.task
    text = ("Textbox", {"label": "Text", "lines": 3})
    bars = ("Label", {"label": "Labels", "num_top_classes": 5})
    if task == "text-classification":
        return Page([text], [bars], lambda value: _label_scores(pipe(value, top_k=None)),
                    [["I love this movie!"], ["This was a waste of time."]])
    if task == "token-classification":
        return Page([text], [("HighlightedText", {"label": "Entities"})],
                    lambda value: _entities(value, pipe(value, aggregation_strategy="simple")),
                    [["My name is Sarah and I live in London."]])
    if task == "fill-mask":
        mask = pipe.tokenizer.mask_token
        return Page([("Textbox", {"label": f"Text with {mask}", "lines": 2})], [bars],
                    lambda value: _label_scores(pipe(value, top_k=5), "token_str"),
                    [[f"Paris is the {mask} of France."]])
    if task == "zero-shot-classification":
        def classify(value: str, names: str) -> dict[str, float]:
            result = pipe(value, candidate_labels=[n.strip() for n in names.split(",") if n.strip()])
            return dict(zip(result["labels"], result["scores"]))

        return Page([text, ("Textbox", {"label": "Candidate labels, comma-separated", "lines": 1})],
                    [bars], classify, [["I am going to the beach this weekend.", "travel, cooking, politics"]])
    if task == "question-answering":
        def answer(question: str, context: str) -> dict:
            result = pipe(question=question, context=context)
            return {"text": context, "entities": [
                {"entity": f"answer {result['score']:.2f}", "start": result["start"], "end": result["end"]}]}

        return Page([("Textbox", {"label": "Question", "lines": 1}), ("Textbox", {"label": "Context", "lines": 5})],
                    [("HighlightedText", {"label": "Answer"})], answer,
                    [["Where do I live?", "My name is Wolfgang and I live in Berlin."]])
    if task == "feature-extraction":
        return Page([("Textbox", {"label": "Sentences, one a line", "lines": 5})],
                    [("Dataframe", {"label": "Cosine similarity of the sentence embeddings"})],
                    lambda value: _similarity_table(pipe, value),
                    [["A man is eating food.\nA man is eating bread.\nA woman plays the violin."]],
                    "Each sentence is embedded (pooled as the model's sentence-transformers files say, "
                    "else the mean of its token vectors) and compared with the others.")
    if task == "text-generation":
        return Page([("Textbox", {"label": "Prompt", "lines": 3}),
                     ("Slider", {"label": "Max new tokens", "minimum": 1, "maximum": 256, "value": 40, "step": 1})],
                    [("Textbox", {"label": "Generated text", "lines": 6})],
                    lambda value, tokens: pipe(value, max_new_tokens=int(tokens))[0]["generated_text"],
                    [["Once upon a time", 40]])
    if task in ("summarization", "translation", "text2text-generation"):
        key = {"summarization": "summary_text", "translation": "translation_text"}.get(task, "generated_text")
        example = {"summarization": "The tower is 324 metres tall, about the same height as an "
                   "81-storey building, and the tallest structure in Paris.",
                   "translation": "How old are you?"}.get(task, "translate English to German: How old are you?")
        return Page([text], [("Textbox", {"label": key.replace("_", " ").capitalize(), "lines": 4})],
                    lambda value: pipe(value)[0][key], [[example]])
    if task == "zero-shot-image-classification":
        def classify_image(image: Any, names: str) -> dict[str, float]:
            labels = [n.strip() for n in names.split(",") if n.strip()]
            return _label_scores(pipe(image, candidate_labels=labels))

        return Page([("Image", {"type": "pil", "label": "Image"}),
                     ("Textbox", {"label": "Candidate labels, comma-separated", "lines": 1})],
                    [bars], classify_image)
    if task == "zero-shot-audio-classification":
        def classify_audio(audio: Any, names: str) -> dict[str, float]:
            labels = [n.strip() for n in names.split(",") if n.strip()]
            return _label_scores(pipe(audio, candidate_labels=labels))

        return Page([("Audio", {"type": "filepath", "label": "Audio"}),
                     ("Textbox", {"label": "Candidate labels, comma-separated", "lines": 1})],
                    [bars], classify_audio)
    if task == "mask-generation":
        def masks(image: Any, points_per_side: float):
            found = pipe(image, points_per_crop=int(points_per_side))
            return image, [(mask, f"{score:.2f}") for mask, score in zip(found["masks"], found["scores"].tolist())]

        return Page([("Image", {"type": "pil", "label": "Image"}),
                     ("Slider", {"label": "Points per side", "minimum": 4, "maximum": 64, "value": 32, "step": 1})],
                    [("AnnotatedImage", {"label": "Masks"})], masks)
    if task == "object-detection":
        def detect(image: Any, threshold: float):
            found = pipe(image, threshold=float(threshold))
            boxes = [((d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"]),
                      f"{d['label']} {d['score']:.2f}") for d in found]
            return image, boxes

        return Page([("Image", {"type": "pil", "label": "Image"}),
                     ("Slider", {"label": "Threshold", "minimum": 0.0, "maximum": 1.0, "value": 0.5, "step": 0.05})],
                    [("AnnotatedImage", {"label": "Detections"})], detect)
    if task == "zero-shot-object-detection":
        def detect_labels(image: Any, names: str, threshold: float):
            labels = [n.strip() for n in names.split(",") if n.strip()]
            found = pipe(image, candidate_labels=labels, threshold=float(threshold))
            return image, [((d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"]),
                            f"{d['label']} {d['score']:.2f}") for d in found]

        return Page([("Image", {"type": "pil", "label": "Image"}),
                     ("Textbox", {"label": "Objects to find, comma-separated", "lines": 1}),
                     ("Slider", {"label": "Threshold", "minimum": 0.0, "maximum": 1.0, "value": 0.1, "step": 0.01})],
                    [("AnnotatedImage", {"label": "Detections"})], detect_labels)
    if task == "image-feature-extraction":
        def embed(image: Any) -> dict:
            import torch

            features = torch.as_tensor(pipe(image, return_tensors=True)).float()
            return {"shape": list(features.shape), "first values": [round(v, 4) for v in features.flatten()[:8].tolist()]}

        return Page([("Image", {"type": "pil", "label": "Image"})], [("JSON", {"label": "Features"})], embed)
    if task in ("image-classification", "audio-classification"):
        upload = ("Image", {"type": "pil", "label": "Image"}) if task.startswith("image") else \
            ("Audio", {"type": "filepath", "label": "Audio"})
        return Page([upload], [bars], lambda value: _label_scores(pipe(value, top_k=5)))
    if task == "automatic-speech-recognition":
        return Page([("Audio", {"type": "filepath", "label": "Audio"})],
                    [("Textbox", {"label": "Transcript", "lines": 4})], lambda value: pipe(value)["text"])
    image = ("Image", {"type": "pil", "label": "Image"})
    if task == "image-to-text":
        return Page([image], [("Textbox", {"label": "Caption", "lines": 2})],
                    lambda value: pipe(value)[0]["generated_text"])
    if task == "visual-question-answering":
        return Page([image, ("Textbox", {"label": "Question", "lines": 1})], [bars],
                    lambda value, question: _label_scores(pipe(image=value, question=question, top_k=5),
                                                          "answer"))
    if task == "document-question-answering":
        return Page([("Image", {"type": "pil", "label": "Document"}),
                     ("Textbox", {"label": "Question", "lines": 1})], [bars],
                    lambda value, question: _label_scores(pipe(image=value, question=question, top_k=3),
                                                          "answer"),
                    note="Words and boxes come from the tesseract program (apt-get install tesseract-ocr).")
    if task in ("image-to-image", "depth-estimation"):
        key = "depth" if task == "depth-estimation" else None
        return Page([image], [("Image", {"type": "pil", "label": "Depth" if key else "Output"})],
                    lambda value: pipe(value)[key] if key else pipe(value))
    if task == "image-segmentation":
        def segment(value: Any):
            return value, [(item["mask"], str(item["label"])) for item in pipe(value)]

        return Page([image], [("AnnotatedImage", {"label": "Segments"})], segment)
    if task == "video-classification":
        return Page([("Video", {"label": "Video"})], [bars],
                    lambda value: _label_scores(pipe(value, top_k=5)))
    if task == "text-to-audio":  # gradio plays (sampling_rate, samples)
        def speak(value: str):
            result = pipe(value)
            return result["sampling_rate"], result["audio"]

        return Page([text], [("Audio", {"label": "Audio", "type": "numpy"})], speak,
                    [["Hello, this is lightpipe speaking."]])
    raise ValueError(f"lightpipe demo has no page for the {task!r} task yet.")


def build_demo(pipe: Any, title: str | None = None):
    """A ``gradio.Interface`` for ``pipe`` (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("lightpipe demo needs the demo extra: pip install 'lightpipe[demo]'") from None

    page = page_for(pipe)
    name = short_name(getattr(pipe.model, "name_or_path", None) or type(pipe.model).__name__)
    examples = page.examples
    if examples is None and len(page.inputs) == 1 and page.inputs[0][0] == "Image":
        examples = [[_example_image()]]  # an image page with something to click on
    make = lambda specs: [getattr(gr, kind)(**options) for kind, options in specs]  # noqa: E731
    return gr.Interface(
        fn=page.run, inputs=make(page.inputs), outputs=make(page.outputs), examples=examples,
        title=title or f"lightpipe · {pipe.task} · {name}",
        description=f"Model: `{name}`. {page.note}".strip(), flagging_mode="never",
        analytics_enabled=False)


def short_name(name: str) -> str:
    """A model's name as a person reads it: the Hub id of a Hugging Face cache folder
    (``.../models--org--name/snapshots/...`` -> ``org/name``), a folder's last part, or the id."""
    parts = str(name).replace(os.sep, "/").split("/")
    for part in parts:
        if part.startswith("models--"):
            return "/".join(part[len("models--"):].split("--"))
    if os.path.isabs(str(name)) or str(name).startswith((".", "~")):
        return next((part for part in reversed(parts) if part), str(name))
    return str(name)


def _example_image() -> str:
    """A small picture (a sky, a sun and a house) written once to the temporary folder."""
    import tempfile

    from PIL import Image, ImageDraw

    path = os.path.join(tempfile.gettempdir(), "lightpipe-demo-example.png")
    if not os.path.exists(path):
        image = Image.new("RGB", (320, 240), (135, 190, 235))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 170, 320, 240), fill=(90, 160, 70))
        draw.ellipse((240, 20, 290, 70), fill=(250, 220, 60))
        draw.rectangle((80, 110, 180, 190), fill=(190, 90, 60))
        draw.polygon([(70, 110), (130, 60), (190, 110)], fill=(120, 50, 40))
        image.save(path)
    return path


def launch(task: str, model: str | None = None, host: str = "127.0.0.1", port: int | None = 7860,
           **pipeline_kwargs: Any) -> int:
    """Build the task's pipeline and serve its page until Ctrl+C."""
    from .pipelines import pipeline

    demo = build_demo(pipeline(task, model=model, **pipeline_kwargs))
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True)
    return 0
