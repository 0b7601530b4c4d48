"""``lightpipe chat``: a conversation with a chat model on the terminal, as ``transformers
chat``: replies stream as they are generated; Ctrl-C stops a reply and returns to the prompt
(a second Ctrl-C, Ctrl-D or /exit leaves); when the conversation outgrows the model's context,
the oldest turns are dropped with a notice; /reset, /help."""

from __future__ import annotations

import sys
from typing import Any, TextIO

HELP = ("Commands: /reset starts a new conversation, /help shows this, /exit (or Ctrl-D) quits. "
        "Ctrl-C stops a reply.")


class ChatSession:
    """The conversation and the terminal around it. ``pipe`` is a text-generation pipeline."""

    def __init__(self, pipe: Any, system: str | None, max_new_tokens: int, generate_kwargs: dict,
                 stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.pipe, self.max_new_tokens, self.generate_kwargs = pipe, max_new_tokens, generate_kwargs
        self.system = [{"role": "system", "content": system}] if system else []
        self.conversation = list(self.system)
        self.stdin, self.stdout, self.stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
        self.interactive = self.stdin.isatty()
        self.context = _context_length(pipe)

    def run(self, name: str) -> int:
        if self.interactive:
            self._note(f"Chatting with {name}. {HELP}")
        try:
            self._loop()
        except KeyboardInterrupt:  # Ctrl-C anywhere but in a reply: leave cleanly
            print(file=self.stderr)
        return 0

    def _loop(self) -> None:
        while True:
            if self.interactive:
                print("user> ", end="", file=self.stderr, flush=True)
            line = self.stdin.readline()
            if not line or line.strip() == "/exit":
                return
            message = line.rstrip("\r\n")
            command = message.strip()
            if command == "/reset":
                self.conversation = list(self.system)
                self._note("New conversation.")
                continue
            if command == "/help":
                self._note(HELP)
                continue
            if not command:
                continue
            self.conversation.append({"role": "user", "content": message})
            if not self._fit():
                continue
            self.reply()

    def reply(self) -> None:
        """Stream one reply; Ctrl-C stops it (the words so far stay in the conversation)."""
        if self.interactive:
            print("assistant> ", end="", file=self.stderr, flush=True)
        pieces = []
        stream = self.pipe.stream(self.conversation, max_new_tokens=self.max_new_tokens,
                                  **self.generate_kwargs)
        try:
            for piece in stream:
                pieces.append(piece)
                print(piece, end="", file=self.stdout, flush=True)
        except KeyboardInterrupt:
            stream.close()  # the generation stops at its next token and its thread ends
            print(file=self.stdout, flush=True)
            self._note("(reply stopped; Ctrl-C again at the prompt, Ctrl-D or /exit to leave)")
        else:
            print(file=self.stdout, flush=True)
        self.conversation.append({"role": "assistant", "content": "".join(pieces)})

    def _fit(self) -> bool:
        """Drop the oldest turns until the prompt plus a reply fits the context; False (and
        the message dropped) when the last message alone does not fit."""
        if self.context is None:
            return True
        dropped = 0
        while self._prompt_length() + self.max_new_tokens > self.context:
            turns = self.conversation[len(self.system):]
            if len(turns) <= 1:
                self.conversation.pop()
                self._note(f"That message is too long for the model's context of {self.context} tokens "
                           f"(with up to {self.max_new_tokens} new tokens); send a shorter one.")
                return False
            cut = 2 if len(turns) > 2 and turns[1]["role"] == "assistant" else 1
            del self.conversation[len(self.system):len(self.system) + cut]
            dropped += cut
        if dropped:
            self._note(f"(the conversation outgrew the model's context of {self.context} tokens: "
                       f"the oldest {dropped} message(s) were dropped)")
        return True

    def _prompt_length(self) -> int:
        ids = self.pipe.tokenizer.apply_chat_template(self.conversation, add_generation_prompt=True,
                                                      tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def _note(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)


def _context_length(pipe: Any) -> int | None:
    """The model's context length in tokens, when it has one."""
    model = pipe.model
    limit = getattr(model, "max_positions", None)
    value = limit() if callable(limit) else None
    if value is None:
        config = model.config
        value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, int) and 0 < value < 10**8 else None


__all__ = ["ChatSession"]
