"""`lightpipe chat` (issue 22, item 1): Ctrl-C stops a streaming reply and returns to the
prompt, in a real process on a pseudo-terminal (it aborted with exit 134 before); a second
Ctrl-C leaves cleanly; a conversation longer than the context drops its oldest turns."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

import lightpipe
from lightpipe.cli_chat import ChatSession


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen, end = b"", time.monotonic() + timeout
    while needle not in seen and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_ctrl_c_stops_a_reply_and_a_second_one_leaves(decoder):
    folder = decoder("llama", max_position_embeddings=16384)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "lightpipe", "chat", "--model", str(folder), "--max-new-tokens", "12000",
         "--kwargs", '{"do_sample": false, "eos_token_id": null}'],
        stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    transcript = []  # everything the chat wrote, for the assertion messages (a rare failure
    # under the full suite only has not been explained yet)

    def read(needle: bytes, timeout: float) -> bytes:
        got = _read_until(leader, needle, timeout)
        transcript.append(got)
        return got

    def state() -> str:
        return f"exit code {process.poll()}; transcript {b''.join(transcript)[-3000:]!r}"

    try:
        assert b"user> " in read(b"user> ", 120), state()
        os.write(leader, b"Hello there\n")
        assert b"assistant> " in read(b"assistant> ", 60), state()
        time.sleep(0.3)  # a few tokens out; 12,000 take far longer (a fast CPU made 3,000 in ~1 s)
        os.killpg(process.pid, signal.SIGINT)
        after = read(b"user> ", 60)
        assert b"reply stopped" in after and b"user> " in after, state()
        assert process.poll() is None, state()  # still running, back at the prompt
        os.write(leader, b"/help\n")
        assert b"/reset" in read(b"Ctrl-C stops", 30), state()
        os.killpg(process.pid, signal.SIGINT)  # at the prompt: leave
        code = process.wait(timeout=60)
        transcript.append(_read_until(leader, b"\0", 1))
        assert code == 0, state()
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)


def test_the_oldest_turns_are_dropped_when_the_context_is_full(decoder):
    folder = decoder("llama", max_position_embeddings=256)
    pipe = lightpipe.pipeline("text-generation", model=str(folder))
    one = len(pipe.tokenizer.apply_chat_template([{"role": "user", "content": "message 0"}],
                                                 add_generation_prompt=True, return_dict=True)["input_ids"])
    lines = "".join(f"message {i}\n" for i in range(40)) + "/exit\n"
    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(pipe, None, 8, {"do_sample": False}, io.StringIO(lines), out, err)
    replies = []
    reply = session.reply
    session.reply = lambda: replies.append(1) or reply()
    assert session.run("tiny") == 0
    assert "oldest" in err.getvalue() and "dropped" in err.getvalue()
    assert one * 3 < 256 < one * 40  # several turns fit, not all forty
    assert len(replies) == 40  # every message got its reply
    assert session.conversation[-2]["content"] == "message 39"
    session.conversation.pop()  # the last reply: the prompt it answered fitted
    assert session._prompt_length() + 8 <= 256

    session = ChatSession(pipe, None, 8, {}, io.StringIO("word " * 300 + "\nhi\n"), io.StringIO(), err)
    assert session.run("tiny") == 0
    assert "too long for the model's context of 256 tokens" in err.getvalue()


def test_stream_close_ends_the_generation_thread(decoder):
    import threading

    pipe = lightpipe.pipeline("text-generation", model=str(decoder("llama", max_position_embeddings=4096)))
    before = threading.active_count()
    stream = pipe.stream("Hello", max_new_tokens=3000, do_sample=False, eos_token_id=None)
    next(stream)
    start = time.perf_counter()
    stream.close()
    assert time.perf_counter() - start < 10
    assert threading.active_count() == before
