"""A soak of `taide serve`: N clients for M minutes with what a public server meets — streams, clients that leave
mid-answer, bad input, oversized bodies, JSON-constrained answers — while the engine process is killed every K
seconds (SIGABRT and SIGKILL in turn, as a native abort and the OOM killer do). The server runs as `taide serve
smollm2-135m` in its own process, the clients in this one.

It passes when no response is a 5xx other than the two the API documents for an engine fault (500 engine_fault for
the requests the engine was serving, 503 engine_restarting with Retry-After while it reloads), every 200 is whole
(a stream ends with [DONE]; a constrained answer parses as JSON), the server process is the same one at the end and
still answers, and its memory (server and engine process) stays bounded: the report gives RSS at the start, the
peak and the end.

    .venv/bin/python -m bench.serve_soak [--clients 8] [--minutes 3] [--kill-every 30] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.report import publish
from bench.serve_load import PROMPTS, ServerProcess

KINDS = ("stream", "leave", "bad", "oversized", "json", "completion")
BAD_BODIES = [
    {"messages": []},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}], "temperature": -1},
    {"messages": [{"role": "user", "content": "hi"}], "repetition_penalty": 5e-324,
     "response_format": {"type": "json_object"}},
    {"messages": [{"role": "user", "content": "hi"}], "top_k": 10**9},
    {"messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * 40},
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
    {"messages": [{"role": "assistant", "content": "hi"}, {"role": "system", "content": "late"}]},
]


def rss_kb(pid: int | None) -> int:
    """Resident memory of a process, in kB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, TypeError, ValueError):
        pass
    return 0


class Soak:
    def __init__(self, url: str, seed: int):
        self.url = url
        self.rng = random.Random(seed)
        self.outcomes: Counter = Counter()  # (kind, status or error)
        self.failures: list[str] = []  # what breaks the pass condition, with the request

    def record(self, kind: str, outcome, ok: bool, detail: str = "") -> bool:
        """Count an outcome; True when the client should wait before its next request (told to retry later)."""
        self.outcomes[(kind, outcome)] += 1
        if not ok:
            self.failures.append(f"{kind}: {outcome} {detail}"[:300])
        return outcome in (429, 503)

    def _allowed_5xx(self, status: int, body: str) -> bool:
        """The engine-fault answers the API documents; anything else 5xx is a failure."""
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return False
        return (status, code) in ((500, "engine_fault"), (503, "engine_restarting"))

    async def one(self, client: httpx.AsyncClient, kind: str) -> bool:
        prompt = [{"role": "user", "content": self.rng.choice(PROMPTS)}]
        chat, completions = f"{self.url}/v1/chat/completions", f"{self.url}/v1/completions"
        try:
            if kind in ("stream", "leave"):
                body = {"messages": prompt, "max_tokens": 48, "stream": True, "temperature": 0.7}
                async with client.stream("POST", chat, json=body) as response:
                    if response.status_code != 200:
                        text = (await response.aread()).decode()
                        return self.record(kind, response.status_code, self._allowed_5xx(response.status_code, text)
                                           or response.status_code == 429, text)
                    events = 0
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        events += 1
                        if kind == "leave" and events == 3:
                            return self.record(kind, "left", True)  # closing the stream cancels the answer
                        if line == "data: [DONE]":
                            return self.record(kind, 200, True)
                        if '"error"' in line:  # an engine fault mid-stream: an error event, then [DONE]
                            error = json.loads(line[6:]).get("error", {})
                            self.record(kind, "fault event", "engine" in error.get("message", ""), line)
                    return self.record(kind, "no [DONE]", False)
            if kind == "bad":
                body = self.rng.choice(BAD_BODIES)
                r = await client.post(chat, json=body)
                return self.record(kind, r.status_code, r.status_code == 400 or self._allowed_5xx(r.status_code,
                                                                                                  r.text), r.text)
            if kind == "oversized":
                r = await client.post(completions, content=b'{"prompt": "' + b"a" * (3 << 20) + b'"}',
                                      headers={"content-type": "application/json"})
                return self.record(kind, r.status_code, r.status_code == 413, r.text[:200])
            if kind == "json":
                body = {"messages": [{"role": "user", "content": "Give a JSON object with a name and an age."}],
                        "max_tokens": 48, "temperature": 0.7, "response_format": {"type": "json_object"}}
                r = await client.post(chat, json=body)
                if r.status_code == 200:
                    answer = r.json()["choices"][0]
                    whole = answer["finish_reason"] == "stop"
                    try:
                        ok = not whole or isinstance(json.loads(answer["message"]["content"]), dict)
                    except ValueError:
                        ok = False
                    return self.record(kind, 200, ok, answer["message"]["content"][:200])
                return self.record(kind, r.status_code, r.status_code == 429 or self._allowed_5xx(r.status_code,
                                                                                                  r.text), r.text)
            r = await client.post(completions, json={"prompt": "台灣的首都是", "max_tokens": 16})
            return self.record(kind, r.status_code, r.status_code in (200, 429) or self._allowed_5xx(
                r.status_code, r.text), r.text[:200])
        except httpx.TransportError as e:  # the server itself did not answer: the one thing that must not happen
            return self.record(kind, type(e).__name__, False, str(e))


async def soak(url: str, clients: int, seconds: float, kill_every: float, server_pid: int, seed: int):
    state = Soak(url, seed)
    memory: list[tuple[float, int, int]] = []  # (t, server kB, engine kB)
    kills: list[str] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits, trust_env=False) as client:

        async def engine_pid() -> int | None:
            try:
                return (await client.get(f"{url}/health")).json().get("pid")
            except (httpx.HTTPError, ValueError):
                return None

        async def worker(i: int):
            rng = random.Random(seed + i)
            while time.monotonic() < deadline:
                if await state.one(client, rng.choice(KINDS)):
                    await asyncio.sleep(1.0)  # as clients honour Retry-After (which says more)

        async def killer():
            signals = [signal.SIGABRT, signal.SIGKILL]
            while kill_every and time.monotonic() + kill_every < deadline:
                await asyncio.sleep(kill_every)
                pid = await engine_pid()
                if pid:
                    sig = signals[len(kills) % 2]
                    os.kill(pid, sig)
                    kills.append(sig.name)

        async def sampler():
            started = time.monotonic()
            while time.monotonic() < deadline:
                memory.append((time.monotonic() - started, rss_kb(server_pid), rss_kb(await engine_pid())))
                await asyncio.sleep(2.0)

        await asyncio.gather(*(worker(i) for i in range(clients)), killer(), sampler())
        # the end: the same server process answers once the engine is back
        answered = False
        for _ in range(120):
            try:
                r = await client.post(f"{url}/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
                if r.status_code == 200:
                    answered = True
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(1.0)
    return state, memory, kills, answered


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between engine kills (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a kill still stops the server (finally)

    server = ServerProcess()
    try:
        server.wait_ready()
        pid = server.proc.pid
        print(f"soak: {args.clients} clients for {args.minutes:g} min, the engine killed every {args.kill_every:g} s")
        state, memory, kills, answered = asyncio.run(
            soak(server.url, args.clients, args.minutes * 60, args.kill_every, pid, args.seed))
        alive = server.proc.poll() is None and server.proc.pid == pid
        restarts = server.engine_stats().get("restarts") if answered else None
    finally:
        server.stop()

    by_kind = {kind: Counter() for kind in KINDS}
    for (kind, outcome), n in state.outcomes.items():
        by_kind[kind][str(outcome)] += n
    total = sum(state.outcomes.values())
    start, peak = memory[0] if memory else (0, 0, 0), max(memory, key=lambda m: m[1] + m[2]) if memory else (0, 0, 0)
    end = memory[-1] if memory else (0, 0, 0)
    passed = not state.failures and alive and answered
    lines = [f"`python -m bench.serve_soak --clients {args.clients} --minutes {args.minutes:g} --kill-every "
             f"{args.kill_every:g}`: `taide serve smollm2-135m` (the engine in its own process), {args.clients} "
             f"clients for {args.minutes:g} minutes, the engine killed {len(kills)} times "
             f"({', '.join(Counter(kills).keys()) or 'never'}).", "",
             f"**{'PASS' if passed else 'FAIL'}**: {total:,} requests; {len(state.failures)} answers outside the "
             f"documented ones; server process {'the same and answering' if alive and answered else 'LOST'} at the "
             f"end; engine restarts counted by the server: {restarts if restarts is not None else '?'}.", "",
             "| kind | outcomes |", "|---|---|"]
    for kind in KINDS:
        lines.append(f"| {kind} | " + ", ".join(f"{o}: {n:,}" for o, n in sorted(by_kind[kind].items())) + " |")
    lines += ["", "| RSS (MB) | server | engine |", "|---|---:|---:|",
              f"| start | {start[1] / 1024:.0f} | {start[2] / 1024:.0f} |",
              f"| peak (together) | {peak[1] / 1024:.0f} | {peak[2] / 1024:.0f} |",
              f"| end | {end[1] / 1024:.0f} | {end[2] / 1024:.0f} |"]
    if state.failures:
        lines += ["", "First answers outside the documented ones:", ""] + [f"- `{f}`" for f in state.failures[:5]]
    publish("serve-soak", "\n".join(lines), write=not args.no_write)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
