"""The handle transport (deployments/handles.py) with stand-in handles: a stage call made through Remote is
cancelled downstream when its caller is, for plain and streamed methods."""

from __future__ import annotations

import asyncio

import pytest

from deployments.handles import Remote


class Response:
    """Stands in for a DeploymentResponse: awaitable, cancellable."""

    def __init__(self, args, kwargs=None):
        self.args, self.kwargs, self.cancelled = args, kwargs or {}, False
        self._result = asyncio.get_running_loop().create_future()

    def __await__(self):
        return self._result.__await__()

    def cancel(self):
        self.cancelled = True


class Stream:
    """Stands in for a streaming DeploymentResponseGenerator."""

    def __init__(self, args):
        self.args, self.cancelled, self.items = args, False, iter(["a", "b", "c"])

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return next(self.items)
        except StopIteration:
            raise StopAsyncIteration from None

    def cancel(self):
        self.cancelled = True


class Handle:
    def __init__(self, streaming: bool = False):
        self.streaming, self.calls = streaming, []

    def options(self, stream: bool):
        assert stream
        streamed = Handle(streaming=True)
        streamed.calls = self.calls
        return streamed

    def __getattr__(self, method: str):
        handle = self

        class Method:
            def remote(self, *args, **kwargs):
                call = Stream(args) if handle.streaming else Response(args, kwargs)
                handle.calls.append((method, call))
                return call

        return Method()


async def test_a_cancelled_caller_cancels_the_remote_call():
    handle = Handle()
    stage = Remote(handle)
    task = asyncio.ensure_future(stage.search("kb", "query", 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [(method, call)] = handle.calls
    assert method == "search" and call.args == ("kb", "query", 5) and call.cancelled


async def test_a_finished_call_is_not_cancelled():
    handle = Handle()
    task = asyncio.ensure_future(Remote(handle).ping())
    await asyncio.sleep(0.01)
    handle.calls[0][1]._result.set_result("pong")
    assert await task == "pong" and not handle.calls[0][1].cancelled


async def test_keyword_arguments_reach_the_remote_method():
    """The ingress asks the graph stage `search(..., texts=False)`: a keyword the handle call must carry."""
    handle = Handle()
    task = asyncio.ensure_future(Remote(handle).search("kb", "query", 1, 5, None, texts=False))
    await asyncio.sleep(0.01)
    handle.calls[0][1]._result.set_result("found")
    assert await task == "found" and handle.calls[0][1].kwargs == {"texts": False}


async def test_a_stream_closed_early_is_cancelled_and_a_finished_one_is_not():
    handle = Handle()
    stage = Remote(handle, streaming=("answer_stream",))
    early = stage.answer_stream("q", [], [])
    assert await anext(early) == "a"
    await early.aclose()
    assert handle.calls[-1][1].cancelled
    assert [piece async for piece in stage.answer_stream("q", [], [])] == ["a", "b", "c"]
    assert not handle.calls[-1][1].cancelled
