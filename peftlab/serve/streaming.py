"""Token-by-token text for `stream: true`, from inside a batched generate(), framed as server-sent events.

transformers' TextStreamer takes one row only; generate() itself hands a streamer each step's new tokens for every
row, so RowStreamer forwards each row's token to that row's listener. What a client is shown is held to a prefix of
the final answer (inference.py cuts it: strip, stop strings, the row's max_new_tokens), so streamed text and
non-streamed text are the same: trailing spaces, a half-decoded character and the last len(stop) - 1 characters
wait for the next token or for the final answer.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future

from transformers.generation.streamers import BaseStreamer

DONE = object()


def sse(event: dict | str) -> str:
    """One server-sent event (the OpenAI streams' framing); a str goes as it is ("[DONE]")."""
    return f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"


class RowStreamer(BaseStreamer):
    def __init__(self, listeners: list[Callable[[int], None] | None]):
        self.listeners, self.prompt_seen = listeners, False

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call hands over the prompts
            self.prompt_seen = True
            return
        for listener, token in zip(self.listeners, value.reshape(-1).tolist(), strict=True):
            if listener is not None:
                listener(token)

    def end(self) -> None:
        pass


def shown_prefix(text: str, stop: tuple[str, ...]) -> str:
    """The part of a partial answer that the final answer is sure to start with."""
    text = text.lstrip()
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        return text[: min(cuts)]
    text = text.rstrip().rstrip("\ufffd")  # a byte-level token may hold half a character
    hold = max((len(s) for s in stop), default=1) - 1
    return text[: len(text) - hold] if hold else text


class TokenFeed:
    """A row's tokens, from the batch worker's thread to the event loop that writes the response."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.queue = loop, asyncio.Queue()

    def listener(self, token: int) -> None:  # called on the worker thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, token)

    def follow(self, future: Future) -> None:
        """DONE arrives after the row's last token: both go through the loop's queue of callbacks, in order."""
        future.add_done_callback(lambda _: self.loop.call_soon_threadsafe(self.queue.put_nowait, DONE))

    async def pieces(self, decode: Callable, limit: int | None, eos: int, stop: tuple, timeout: float) -> AsyncIterator:
        """New text as it becomes certain; the caller adds what the final answer holds beyond it."""
        tokens, shown, loop = [], "", asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (token := await asyncio.wait_for(self.queue.get(), max(deadline - loop.time(), 0))) is not DONE:
            if eos in tokens or (limit is not None and len(tokens) >= limit):
                continue  # the row is finished; the batch goes on for the others
            tokens.append(token)
            now = shown_prefix(decode([t for t in tokens if t != eos]), stop)
            if len(now) > len(shown) and now.startswith(shown):
                yield now[len(shown) :]
                shown = now
