"""OpenAI-compatible endpoints: ``/v1/embeddings``, ``/v1/chat/completions``, ``/v1/completions``,
``/v1/audio/speech`` (a text-to-audio model's WAV bytes; see wav.py).

Embeddings come from a feature-extraction model: the token vectors of each text, pooled and
normalised as the checkpoint says (lightpipe/embeddings.py). ``encoding_format: "base64"`` (the openai
client's default) sends little-endian float32 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..embeddings import finish as finish_vector
from ..embeddings import pool, read_settings
from .errors import ApiError, pipeline_error, require_object
from .limits import refuse_code
from .metrics import LATENCY_BUCKETS
from .routes import _pipeline_call, run_batch
from .state import ServedModel, ServerState


def _model_for(request: Request, state: ServerState, body: dict, task: str, need: str) -> ServedModel:
    """The served model ``body["model"]`` names (404 if none), which must serve ``task``
    (422 saying ``need`` otherwise); the request is counted under its name."""
    model = state.lookup(body["model"], "model")
    request.state.model = model.name
    if model.task != task:
        raise ApiError(422, f"Model {model.name!r} serves {model.task}; {need}.", "wrong_task", "model")
    return model


async def embeddings(request: Request, state: ServerState) -> Response:
    body = require_object(await state.read_body(request),
                          {"input", "model", "encoding_format", "dimensions", "user"}, {"input", "model"})
    model = _model_for(request, state, body, "feature-extraction",
                       "embeddings need a feature-extraction model")
    texts = body["input"]
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        hint = " Token-id inputs are not supported: send the text." if isinstance(texts, list) and texts \
            and all(isinstance(t, (int, list)) for t in texts) else ""
        raise ApiError(422, f"'input' must be a string or a non-empty array of strings.{hint}",
                       "invalid_type", "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(422, f"'encoding_format' must be \"float\" or \"base64\", not {encoding!r}.",
                       "invalid_value", "encoding_format")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise ApiError(422, "'user' must be a string.", "invalid_type", "user")
    model.check_inputs(texts, "input")
    settings = model.cache.get("pooling")
    if settings is None:
        settings = model.cache["pooling"] = read_settings(model.folder, model.pipe.tokenizer)
        config = model.pipe.model.config
        model.cache["size"] = settings.size(config.get("hidden_size") or config.get("dim"))
    size = model.cache["size"]
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions != size):
        raise ApiError(422, f"'dimensions' must be {size} for model {model.name!r} (it "
                            "cannot shorten its embeddings).", "invalid_value", "dimensions")
    pipe, batch_size = model.pipe, model.forward_batch_size
    tokenize = {"truncation": True, "max_length": settings.max_length} if settings.max_length else {}

    def run(batch: list) -> list:
        outputs = pipe(batch, batch_size=batch_size, return_tensors=True, **tokenize)
        return [(finish_vector(pool(hidden, settings.pooling), settings), hidden.shape[1])
                for hidden in outputs]

    def finish(results: list) -> dict:
        data = []
        for index, (vector, _) in enumerate(results):
            if encoding == "base64":
                value: Any = base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
            else:
                value = vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(count for _, count in results)
        state.metrics.inc("lightpipe_prompt_tokens_total", tokens, model=model.name)
        return {"object": "list", "data": data, "model": model.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    key = "embeddings:" + json.dumps(tokenize, sort_keys=True)
    return Response(await model.call(request, key, texts, run, finish), media_type="application/json")


# --- generation: /v1/completions and /v1/chat/completions ---
# Requests with the same generation settings share one batched generate() call (each row stops
# at its own end-of-text; the batch returns when its longest row is done). Streamed requests
# run alone: the streamer follows one sequence, token by token, into server-sent events.

_SAMPLING_FIELDS = {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options",
                    "stop", "seed", "user", "frequency_penalty", "presence_penalty", "logit_bias"}
CHAT_FIELDS = _SAMPLING_FIELDS | {"messages", "max_completion_tokens", "logprobs", "top_logprobs",
                                  "response_format"}
COMPLETION_FIELDS = _SAMPLING_FIELDS | {"prompt", "echo", "logprobs", "suffix", "best_of"}


async def _generation_request(request: Request, state: ServerState, allowed: set[str],
                              required: set[str], default_max_tokens: int
                              ) -> tuple[ServedModel, dict, dict]:
    """A chat or completion request -> (its text-generation model, its body, its settings)."""
    from ..pipelines import SUPPORTED_TASKS

    body = await state.read_body(request)
    if isinstance(body, dict):
        refuse_code(body, "")  # e.g. vLLM's chat_template: code from a client, never run here
    if not SUPPORTED_TASKS["text-generation"].available:
        raise ApiError(501, "Text generation is not built in lightpipe yet, so /v1/chat/completions "
                            "and /v1/completions cannot answer. Embeddings and /v1/pipelines work.",
                       "not_implemented")
    body = require_object(body, allowed, required)
    model = state.lookup(body["model"], "model")
    if model.task != "text-generation":
        raise ApiError(422, f"Model {model.name!r} serves {model.task}; this endpoint needs a "
                            "text-generation model.", "wrong_task", "model")
    request.state.model = model.name
    settings = generation_settings(body, min(default_max_tokens, model.limits.max_tokens),
                                   model.limits.max_tokens)
    settings["stream"], settings["stream_options"] = body.get("stream", False), body.get("stream_options")
    return model, body, settings


def _number(body: dict, key: str, low: float, high: float, default: Any, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ApiError(422, f"'{key}' must be {kind} from {low:g} to {high:g}, not {value!r}.",
                       "invalid_value", key)
    return value


def generation_settings(body: dict, default_max_tokens: int, max_tokens_limit: int = 1 << 20) -> dict:
    """The OpenAI sampling fields -> the pipeline's generate() arguments (and what we refuse);
    ``max_tokens`` at most ``max_tokens_limit`` (the model's context and --max-new-tokens)."""
    for key, neutral in (("frequency_penalty", 0), ("presence_penalty", 0), ("logit_bias", {}),
                         ("logprobs", False), ("top_logprobs", 0), ("suffix", ""), ("best_of", 1)):
        if body.get(key) not in (None, neutral):
            raise ApiError(422, f"'{key}' is not supported by this server.", "unsupported", key)
    if body.get("response_format") not in (None, {"type": "text"}):
        raise ApiError(422, "Only response_format {\"type\": \"text\"} is supported.", "unsupported",
                       "response_format")
    _number(body, "n", 1, 1, 1, integer=True)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", 1, max_tokens_limit, default_max_tokens,
                         integer=True)
    temperature = _number(body, "temperature", 0, 2, 1.0)
    top_p = _number(body, "top_p", 0, 1, 1.0)
    settings: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
    if temperature > 0:
        settings.update(temperature=temperature, top_p=top_p, top_k=0)
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not 0 < len(stop) <= 4 or not all(isinstance(s, str) and s for s in stop):
            raise ApiError(422, "'stop' must be a string or a list of 1 to 4 strings.", "invalid_type", "stop")
        settings["stop_sequence"] = stop
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ApiError(422, "'seed' must be an integer.", "invalid_type", "seed")
    for key in ("stream",):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise ApiError(422, f"'{key}' must be a boolean.", "invalid_type", key)
    return {"generate": settings, "seed": seed, "stop": stop or [], "max_tokens": max_tokens}


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def _chat_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "'messages' must be a non-empty array of {role, content} objects.",
                       "invalid_type", "messages")
    chat = []
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content
                              if isinstance(part, dict) and part.get("type") == "text")
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(content, str):
            raise ApiError(422, f"messages[{index}] must be an object with a string 'role' and a "
                                "string (or text parts) 'content'.", "invalid_type", "messages")
        chat.append({"role": message["role"], "content": content})
    return chat


def queue_streamer(tokenizer: Any, loop: Any, queue: Any) -> Any:
    """A TextStreamer whose text goes to an asyncio queue (from the worker thread); once its
    ``cancelled`` is set, its next put() raises, which stops generate() (the client has gone,
    or has its stop string)."""
    from ..generation import TextStreamer  # generation imports torch: only when streaming

    class QueueStreamer(TextStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.cancelled = False
            self.tokens = 0  # new tokens so far

        def put(self, value: Any) -> None:
            if self.cancelled:
                raise RuntimeError("generation stopped: nobody reads it any more")
            if not self.next_tokens_are_prompt:
                self.tokens += int(value.numel())
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

    return QueueStreamer()


async def _generate(request: Request, state: ServerState, model: ServedModel, items: list,
                    settings: dict, kind: str, echo: bool = False) -> Response:
    pipe, body_stream = model.pipe, settings.get("stream", False)
    generate, stop, max_tokens = settings["generate"], settings["stop"], settings["max_tokens"]
    seed = settings["seed"]
    created, ident = int(time.time()), f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"

    def call(batch: list, **extra: Any) -> list:
        import torch

        if seed is not None:
            extra["generator"] = torch.Generator(device=pipe.device).manual_seed(seed)
        return run_batch(model, batch, batch_size=model.spec.max_batch_size,
                         return_full_text=echo and not body_stream, return_token_count=True,
                         **generate, **extra)

    def prompt_tokens(item: Any) -> int:
        return len(pipe.preprocess_many([item])[0]["input_ids"])

    if not body_stream:
        def finish(results: list) -> dict:
            choices, used_prompt, used_new = [], 0, 0
            for index, (item, records) in enumerate(zip(items, results)):
                text, stopped = _cut_at_stop(records[0]["generated_text"], stop)
                tokens = records[0]["num_new_tokens"]  # counted on the generated ids
                reason = "stop" if stopped or tokens < max_tokens else "length"
                used_prompt += prompt_tokens(item)
                used_new += tokens
                if kind == "chat":
                    choices.append({"index": index, "message": {"role": "assistant", "content": text},
                                    "finish_reason": reason, "logprobs": None})
                else:
                    choices.append({"index": index, "text": text, "finish_reason": reason, "logprobs": None})
            state.metrics.inc("lightpipe_prompt_tokens_total", used_prompt, model=model.name)
            state.metrics.inc("lightpipe_generation_tokens_total", used_new, model=model.name)
            return {"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion",
                    "created": created, "model": model.name, "choices": choices,
                    "usage": {"prompt_tokens": used_prompt, "completion_tokens": used_new,
                              "total_tokens": used_prompt + used_new}}

        # Seeded requests run alone, so that a seed gives the same text whatever else is queued.
        key = "generate:" + json.dumps([generate, echo, seed, ident if seed is not None else ""], default=str)
        return Response(await model.call(request, key, items, call, finish), media_type="application/json")

    # Streaming: one job of its own; its text arrives in `pieces` while the worker generates.
    arrived = time.perf_counter()
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    streamer = queue_streamer(pipe.tokenizer, loop, pieces)

    job = model.submit("stream:" + ident, items, lambda batch: call(batch, streamer=streamer),
                       lambda results: {"done": True})
    # Wait for the first text (or a failure, the timeout, the client leaving) before answering
    # 200, so that an error is still a JSON error with its status.
    first = asyncio.ensure_future(pieces.get())
    try:
        await model.wait(request, job, first)
    except BaseException:
        first.cancel()
        streamer.cancelled = True
        raise
    if first.done():
        state.metrics.observe("lightpipe_time_to_first_token_seconds", time.perf_counter() - arrived,
                              LATENCY_BUCKETS, model=model.name)
        pending_text = [first.result()]
    else:
        first.cancel()
        pending_text = []
    include_usage = bool((settings.get("stream_options") or {}).get("include_usage"))

    def chunk(text: str | None, reason: str | None = None, role: bool = False, usage: dict | None = None) -> str:
        if kind == "chat":
            delta = ({"role": "assistant", "content": ""} if role else {"content": text} if text is not None else {})
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created,
                       "model": model.name, "choices": [] if usage else [choice]}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
            payload = {"id": ident, "object": "text_completion", "created": created,
                       "model": model.name, "choices": [] if usage else [choice]}
        if usage:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def events():
        sent, held, stopped = "", "", False
        keep = max((len(s) for s in stop), default=1) - 1  # text that may be a stop string's start
        try:
            if kind == "chat":
                yield chunk(None, role=True)
            if echo and kind == "completion":
                yield chunk(items[0])
            while True:
                if pending_text:
                    piece = pending_text.pop(0)
                else:
                    getter = asyncio.ensure_future(pieces.get())
                    done, _ = await asyncio.wait({getter, job.future}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        while not pieces.empty():
                            pending_text.append(pieces.get_nowait())
                        if pending_text:
                            continue
                        break
                    piece = getter.result()
                held += piece
                text, stopped = _cut_at_stop(held, stop)
                if stopped:
                    if text:
                        yield chunk(text)
                    sent += text
                    streamer.cancelled = True  # stop generating: the client has its text
                    break
                ready = held[:len(held) - keep] if keep else held
                if ready:
                    yield chunk(ready)
                    sent += ready
                    held = held[len(ready):]
            if not stopped and held:
                yield chunk(held)
                sent += held
            if job.future.done() and not job.future.cancelled() and job.future.exception() is not None \
                    and not stopped:
                error = pipeline_error(job.future.exception())
                yield f"data: {json.dumps({'error': {'message': error.message, 'code': error.code}})}\n\n"
            reason = "stop" if stopped or streamer.tokens < max_tokens else "length"
            yield chunk(None, reason)
            used = prompt_tokens(items[0])
            state.metrics.inc("lightpipe_prompt_tokens_total", used, model=model.name)
            state.metrics.inc("lightpipe_generation_tokens_total", streamer.tokens, model=model.name)
            if include_usage:
                yield chunk(None, usage={"prompt_tokens": used, "completion_tokens": streamer.tokens,
                                         "total_tokens": used + streamer.tokens})
            yield "data: [DONE]\n\n"
        finally:
            streamer.cancelled = True
            model.batcher.cancel(job)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def chat_completions(request: Request, state: ServerState) -> Response:
    from ..pipelines.text_generation import Chat

    model, body, settings = await _generation_request(request, state, CHAT_FIELDS, {"model", "messages"},
                                                      default_max_tokens=256)
    messages = _chat_messages(body["messages"])
    if len(messages) > model.spec.max_list_items:
        raise ApiError(422, f"{len(messages)} messages; this server takes at most "
                            f"{model.spec.max_list_items} (--max-list-items).", "invalid_value", "messages")
    model.check_inputs([messages], "messages")
    return await _generate(request, state, model, [Chat(messages)], settings, "chat")


async def completions(request: Request, state: ServerState) -> Response:
    model, body, settings = await _generation_request(request, state, COMPLETION_FIELDS,
                                                      {"model", "prompt"}, default_max_tokens=16)
    prompts = body["prompt"]
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ApiError(422, "'prompt' must be a string or a non-empty array of strings (token ids "
                            "are not supported).", "invalid_type", "prompt")
    if settings["stream"] and len(prompts) > 1:
        raise ApiError(422, "A streamed completion takes one prompt.", "invalid_value", "prompt")
    echo = body.get("echo", False)
    if not isinstance(echo, bool):
        raise ApiError(422, "'echo' must be a boolean.", "invalid_type", "echo")
    model.check_inputs(prompts, "prompt")
    return await _generate(request, state, model, prompts, settings, "completion", echo=echo)


# --- speech: /v1/audio/speech, a text-to-audio model's audio as WAV bytes (OpenAI's shape) ---
# It runs the pipeline route's call (same batching key: both routes' requests share batches).

SPEECH_FIELDS = {"model", "input", "voice", "response_format", "speed", "instructions", "stream_format"}
# OpenAI's voice names: any of them is this model's default speaker (the openai client always
# sends one); a number picks a speaker of a multi-speaker model (VITS's speaker_id).
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse", "marin", "cedar")


async def speech(request: Request, state: ServerState) -> Response:
    body = require_object(await state.read_body(request), SPEECH_FIELDS, {"model", "input"})
    model = _model_for(request, state, body, "text-to-audio", "speech needs a text-to-audio model")
    text = body["input"]
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "'input' must be a non-empty string: the text to speak (one per "
                            "request).", "invalid_value", "input")
    if body.get("response_format", "wav") != "wav":
        raise ApiError(422, f"'response_format' {body['response_format']!r:.40} is not made here: this "
                            "server returns \"wav\" only (16-bit PCM at the model's sampling rate).",
                       "invalid_value", "response_format")
    if body.get("stream_format") not in (None, "audio"):
        raise ApiError(422, "'stream_format' must be \"audio\" (the whole file in one answer).",
                       "invalid_value", "stream_format")
    if body.get("instructions") not in (None, ""):
        raise ApiError(422, "'instructions' are not supported: this model cannot be told how to "
                            "speak. Leave them out.", "invalid_value", "instructions")
    forward: dict[str, Any] = {}
    speaker = _speaker_id(body.get("voice"))
    if speaker is not None:
        forward["speaker_id"] = speaker
    speed = _number(body, "speed", 0.25, 4.0, 1.0)
    if speed != 1.0:
        config = model.pipe.model.config
        if config.get("model_type") != "vits":
            raise ApiError(422, f"'speed' works with VITS models only, not {config.get('model_type')}; "
                                "leave it out.", "invalid_value", "speed")
        forward["speaking_rate"] = config.get("speaking_rate", 1.0) * speed  # relative to its own
    parameters = model.check_parameters({"forward_params": forward} if forward else {})
    model.check_inputs([text], "input")
    items, run, finish = _pipeline_call(model, text, parameters, raw_wav=True)
    key = "pipeline:" + json.dumps(parameters, sort_keys=True, default=str)
    return Response(await model.call(request, key, items, run, finish), media_type="audio/wav")


def _speaker_id(voice: Any) -> int | None:
    """``voice`` -> a speaker number, or None for the model's default speaker."""
    if voice is None or voice in OPENAI_VOICES:
        return None
    if isinstance(voice, int) and not isinstance(voice, bool) and voice >= 0:
        return voice
    if isinstance(voice, str) and voice.isdigit():
        return int(voice)
    raise ApiError(422, f"'voice' must be a speaker number of this model (0, 1, ...) or one of "
                        f"OpenAI's voice names ({', '.join(OPENAI_VOICES)}), which take the model's "
                        f"default speaker; not {voice!r:.40}.", "invalid_value", "voice")
