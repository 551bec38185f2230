"""A load test of `taide serve` on the embedded default, over loopback, from a separate client process.

The server runs as its own process (`python -m taide.cli serve smollm2-135m`), so the client and the
server do not share one GIL. Three measurements:

1. Load: N streaming clients send chat completions (sampled, short office prompts in Traditional
   Chinese and English) back to back for T seconds: requests, tokens, aggregate tokens/s, p50/p99 of
   time to first token and of latency, errors by HTTP status.
2. Single-stream decode rate through the server against llama-cpp-python's own ``generate`` on the
   same GGUF and prompt ids (the anchor, run in this process while the server idles): greedy, one long
   answer, decode tok/s = (tokens - 1) / (last token - first token), measured from the SSE stream.
   Goal: >= 0.95x the anchor. A second server with ``--stream-interval 0`` (one write per token) is measured in
   the same runs, to show what the default interval buys.
3. Aggregate tokens/s of 8 streams started together against 1 stream alone (same greedy long answer):
   total tokens / (last token received - first request sent). Goal: the same ratio of llama.cpp itself in this
   process (no server), which is what batching can gain on this machine at all.

    .venv/bin/python -m bench.serve_load [--clients 8] [--seconds 30] [--max-tokens 64] [--runs 5] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.report import write_section

MODEL = "smollm2-135m"
HOST = "127.0.0.1"  # loopback only
REPO = Path(__file__).resolve().parents[1]
LONG_PROMPT = [{"role": "user", "content": "Write a long, detailed story about a night market in Taipei."}]
LONG_MAX_TOKENS = 128
STREAMS = 8  # the server's default concurrency (the llamacpp engine's n_parallel)
PROMPTS = [
    "請幫我寫一封簡短的電子郵件，通知同事明天下午兩點開會。",
    "請用三點摘要這段話：本季營收成長百分之十，但成本也增加了。",
    "Draft a short reply thanking a client for their order.",
    "請把這句話翻譯成英文：會議改到下週三上午十點。",
    "List three tips for writing a clear meeting agenda.",
    "請寫一段請假申請的理由，語氣正式。",
    "Summarize in one sentence: the printer on the third floor is out of toner.",
    "請列出辦公室節能的三個建議。",
]
MAX_REQUESTS_PER_CLIENT = 10_000  # the load loop is bounded in count as well as in time
REQUEST_TIMEOUT = 120.0  # seconds for any one request, whatever happens
HEALTH_TIMEOUT = 180.0  # seconds for the server to load the model


# --- the server process ---
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM if this benchmark dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ServerProcess:
    """`taide serve` in a child process, logging to a temporary file; stopped on exit, whatever happens."""

    def __init__(self, *options: str):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="taide-serve-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if k != "TAIDE_API_KEY"}  # no auth on this private server
        self.proc = subprocess.Popen([sys.executable, "-m", "taide.cli", "serve", MODEL, "--host", HOST,
                                      "--port", str(self.port), *options], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        for _ in range(int(HEALTH_TIMEOUT / 0.25) + 1):  # bounded in count and in time
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        raise RuntimeError(f"the server was not ready after {HEALTH_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def engine_stats(self) -> dict:
        """The engine's counters from /metrics (decode steps, tokens, ...)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10.0, trust_env=False).text
        stats = {}
        for line in text.splitlines():
            if line.startswith("taide_engine_"):
                name, value = line.split()
                stats[name.removeprefix("taide_engine_")] = float(value)
        return stats

    def log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self.log.name).read_text(encoding="utf-8", errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


# --- the client ---
@dataclass
class Result:
    status: int | None = None  # HTTP status; None when the connection failed
    error: str | None = None  # connection error or timeout
    sent: float = 0.0
    first: float | None = None  # first non-empty content
    last: float | None = None  # last non-empty content
    done: float | None = None  # end of the response
    chunks: int = 0  # content chunks
    usage_tokens: int | None = None  # usage.completion_tokens of the last chunk
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    text: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.done is not None

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent

    @property
    def latency(self) -> float | None:
        return None if self.done is None else self.done - self.sent

    @property
    def decode_rate(self) -> float:
        if self.first is None or self.last is None or self.tokens < 2 or self.last <= self.first:
            return float("nan")
        return (self.tokens - 1) / (self.last - self.first)


def chat_body(messages, max_tokens: int, temperature: float) -> dict:
    return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True,
            "stream_options": {"include_usage": True}}


async def _stream_once(client: httpx.AsyncClient, url: str, body: dict, r: Result) -> None:
    r.sent = time.perf_counter()
    async with client.stream("POST", url, json=body) as response:
        r.status = response.status_code
        if response.status_code != 200:
            await response.aread()
            r.done = time.perf_counter()
            return
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                r.done = time.perf_counter()
                break
            frame = json.loads(data)
            for choice in frame.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    r.first = r.first or now
                    r.last = now
                    r.chunks += 1
                    r.text.append(content)
                if choice.get("finish_reason"):
                    r.finish_reason = choice["finish_reason"]
            if frame.get("usage"):
                r.usage_tokens = frame["usage"].get("completion_tokens")
                r.prompt_tokens = frame["usage"].get("prompt_tokens")
            if "error" in frame:
                r.error = f"stream error: {frame['error'].get('message')}"


async def request(client: httpx.AsyncClient, url: str, body: dict) -> Result:
    """One streamed chat completion, timed from the client's side; never raises, never outlasts REQUEST_TIMEOUT."""
    r = Result()
    try:
        await asyncio.wait_for(_stream_once(client, url, body, r), REQUEST_TIMEOUT)
    except asyncio.TimeoutError:
        r.error = "timeout"
    except httpx.TransportError as e:
        r.error = type(e).__name__
    if r.status == 200 and r.done is None and r.error is None:
        r.error = "stream ended without [DONE]"
    return r


def new_client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_TIMEOUT), limits=limits, trust_env=False)


# --- 1. load ---
async def load_test(url: str, clients: int, seconds: float, max_tokens: int):
    endpoint = f"{url}/v1/chat/completions"
    results: list[Result] = []
    async with new_client(clients) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(i: int):
            for j in range(MAX_REQUESTS_PER_CLIENT):
                if time.perf_counter() >= deadline:
                    return
                prompt = PROMPTS[(i + j * clients) % len(PROMPTS)]
                r = await request(client, endpoint, chat_body([{"role": "user", "content": prompt}], max_tokens, 0.7))
                results.append(r)
                if not r.ok:
                    await asyncio.sleep(0.2)  # no hot loop against a server that refuses

        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return results, wall


def pct(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarize_load(results: list[Result], wall: float) -> dict:
    ok = [r for r in results if r.ok]
    statuses = Counter(r.status for r in results if r.status is not None and r.status != 200)
    conn = Counter(r.error for r in results if r.error)
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    lats = [r.latency for r in ok]
    return {"requests": len(ok), "sent": len(results), "tokens": tokens, "wall": wall, "tps": tokens / wall,
            "ttft50": pct(ttfts, 0.5), "ttft99": pct(ttfts, 0.99), "lat50": pct(lats, 0.5), "lat99": pct(lats, 0.99),
            "statuses": dict(statuses), "errors": dict(conn),
            "chunks_per_token": sum(r.chunks for r in ok) / tokens if tokens else float("nan")}


# --- 2. single stream vs llama-cpp-python ---
async def server_long(url: str) -> Result:
    async with new_client(1) as client:
        return await request(client, f"{url}/v1/chat/completions", chat_body(LONG_PROMPT, LONG_MAX_TOKENS, 0))


def anchor_long(llm, prompt_ids: list[int], eos: int) -> tuple[float, int]:
    """llama-cpp-python's own generate loop, greedy, stopping where the server would (end of turn or the limit)."""
    llm.reset()
    first = last = None
    n = 0
    for token in llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, reset=True):
        now = time.perf_counter()
        if token == eos:
            break
        n += 1
        first = first or now
        last = now
        if n >= LONG_MAX_TOKENS:
            break
    return (n - 1) / (last - first), n


# --- 3. 8 streams vs 1 ---
class RawBatch:
    """The ceiling of 3. without a server: llama.cpp's C API in this process, a context set up as the llamacpp
    engine sets up its own (n_ctx 8192, 8 sequences, unified KV cache, flash attention on, every core), ``k``
    sequences prefilled together, then one llama_decode per step with a greedy sampler per sequence."""

    def __init__(self, llm, n_ctx: int = 8192, n_seq: int = STREAMS):
        import llama_cpp as lib

        self.lib = lib
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, 512, 512, n_seq
        params.kv_unified, params.no_perf = True, True
        params.n_threads = params.n_threads_batch = os.cpu_count()
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = lib.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create the ceiling's context")
        self.batch = lib.llama_batch_init(512, 0, 1)
        self.eos = llm.token_eos()

    def _add(self, n, token, pos, seq, logits):
        b = self.batch
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, logits
        b.seq_id[n][0] = seq

    def run(self, prompt_ids: list[int], k: int) -> float:
        """Aggregate tok/s of ``k`` greedy answers of up to LONG_MAX_TOKENS, from the prefill to the last token."""
        lib = self.lib
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        samplers = []
        for _ in range(k):
            chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            samplers.append(chain)
        started = time.perf_counter()
        n = 0
        for seq in range(k):
            for i, token in enumerate(prompt_ids):
                last = i == len(prompt_ids) - 1
                self._add(n, token, i, seq, last)
                n += 1
        where = {seq: (seq + 1) * len(prompt_ids) - 1 for seq in range(k)}  # batch index of each sequence's logits
        tokens = 0
        for step in range(LONG_MAX_TOKENS):
            self.batch.n_tokens = n
            if lib.llama_decode(self.ctx, self.batch) != 0:
                raise RuntimeError("llama_decode failed in the ceiling run")
            n, nxt = 0, {}
            for seq, index in where.items():
                token = lib.llama_sampler_sample(samplers[seq], self.ctx, index)
                tokens += 1
                if token != self.eos and step + 1 < LONG_MAX_TOKENS:
                    self._add(n, token, len(prompt_ids) + step, seq, True)
                    nxt[seq], n = n, n + 1
            where = nxt
            if not where:
                break
        elapsed = time.perf_counter() - started
        for chain in samplers:
            lib.llama_sampler_free(chain)
        return tokens / elapsed

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)


async def together(url: str, streams: int) -> tuple[float, list[Result]]:
    endpoint = f"{url}/v1/chat/completions"
    body = chat_body(LONG_PROMPT, LONG_MAX_TOKENS, 0)
    async with new_client(streams) as client:
        results = await asyncio.gather(*(request(client, endpoint, body) for _ in range(streams)))
    ok = [r for r in results if r.ok and r.last is not None]
    if len(ok) < streams:
        return float("nan"), list(results)
    wall = max(r.last for r in ok) - min(r.sent for r in ok)
    return sum(r.tokens for r in ok) / wall, list(results)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent streaming clients in the load test")
    parser.add_argument("--seconds", type=float, default=30, help="how long the load test sends requests")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each load-test request")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the single-stream and 8-vs-1 measures")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a kill still stops the server (finally)

    from taide.engines import load_engine
    from taide.models import embedded_gguf_path
    from taide.serve import ServeConfig

    engine = load_engine(MODEL, "llamacpp")  # only to render the same prompt ids the server will decode
    prompt_ids = engine.prompt_ids(LONG_PROMPT)
    engine.close()  # another llama.cpp context in this process would slow the anchor
    gguf = embedded_gguf_path(MODEL)

    server = ServerProcess()
    # the same server writing every token at once: what the default stream interval buys (it idles meanwhile)
    unspaced = ServerProcess("--stream-interval", "0")
    try:
        t0 = time.perf_counter()
        server.wait_ready()
        unspaced.wait_ready()
        asyncio.run(server_long(unspaced.url))  # warm-up
        print(f"server up on {server.url} in {time.perf_counter() - t0:.1f} s (pid {server.proc.pid})")
        warm = asyncio.run(server_long(server.url))  # warm-up, and a check that the prompt is the same
        if not warm.ok:
            raise RuntimeError(f"warm-up request failed: status {warm.status}, {warm.error}\n{server.log_tail()}")
        if warm.prompt_tokens != len(prompt_ids):
            print(f"warning: the server counted {warm.prompt_tokens} prompt tokens, the anchor has {len(prompt_ids)}")

        # 1. load
        print(f"\n1. load: {args.clients} clients x {args.seconds:g} s, max_tokens {args.max_tokens}, temperature 0.7")
        before = server.engine_stats()
        results, wall = asyncio.run(load_test(server.url, args.clients, args.seconds, args.max_tokens))
        after = server.engine_stats()
        load = summarize_load(results, wall)
        steps = after.get("steps", 0) - before.get("steps", 0)
        load["batch"] = (after.get("tokens", 0) - before.get("tokens", 0)) / steps if steps else float("nan")
        print(f"   {load['requests']} requests ok of {load['sent']}, {load['tokens']} tokens in {wall:.1f} s = "
              f"{load['tps']:.1f} tok/s; TTFT p50 {ms(load['ttft50'])} p99 {ms(load['ttft99'])}; latency p50 "
              f"{ms(load['lat50'])} p99 {ms(load['lat99'])}; HTTP errors {load['statuses'] or 'none'}; "
              f"connection errors {load['errors'] or 'none'}; server: {load['batch']:.2f} tokens per decode step")

        # 2 and 3, interleaved: server single stream, anchor, server 1 stream alone, server 8 together,
        # llama.cpp in-process 1 sequence and 8 (the anchors run while the server idles)
        from taide.engines.llamacpp_engine import open_llama

        # the engine's settings: every core, flash attention on
        llm = open_llama(gguf, n_ctx=2048, n_threads=os.cpu_count(), flash_attn=True, verbose=False)
        eos = llm.token_eos()
        anchor_long(llm, prompt_ids, eos)  # warm-up
        raw = RawBatch(llm)
        raw.run(prompt_ids, STREAMS)  # warm-up
        single, unspaced_single, anchor, one, eight, batch8, raw1, raw8 = [], [], [], [], [], [], [], []
        print(f"\n2./3. greedy, max_tokens {LONG_MAX_TOKENS}, {len(prompt_ids)} prompt tokens, {args.runs} runs")
        for run in range(args.runs):
            r = asyncio.run(server_long(server.url))
            single.append((r.decode_rate, r.tokens) if r.ok else (float("nan"), 0))
            anchor.append(anchor_long(llm, prompt_ids, eos))
            r = asyncio.run(server_long(unspaced.url))
            unspaced_single.append(r.decode_rate if r.ok else float("nan"))
            tps1, _ = asyncio.run(together(server.url, 1))
            one.append(tps1)
            before = server.engine_stats()
            tps8, rs = asyncio.run(together(server.url, STREAMS))
            after = server.engine_stats()
            steps = after.get("steps", 0) - before.get("steps", 0)
            batch8.append((after.get("tokens", 0) - before.get("tokens", 0)) / steps if steps else float("nan"))
            eight.append(tps8)
            raw1.append(raw.run(prompt_ids, 1))
            raw8.append(raw.run(prompt_ids, STREAMS))
            print(f"   run {run + 1}: server decode {single[-1][0]:.1f} tok/s ({single[-1][1]} tokens), anchor "
                  f"{anchor[-1][0]:.1f} tok/s ({anchor[-1][1]} tokens), server with --stream-interval 0 "
                  f"{unspaced_single[-1]:.1f} tok/s; aggregate 1 stream {tps1:.1f} tok/s, "
                  f"{STREAMS} streams {tps8:.1f} tok/s ({sum(x.tokens for x in rs)} tokens, "
                  f"{batch8[-1]:.2f} tokens per decode step); llama.cpp in-process 1 sequence {raw1[-1]:.1f} tok/s, "
                  f"{STREAMS} sequences {raw8[-1]:.1f} tok/s")
        raw.close()
        llm.close()
    finally:
        server.stop()
        unspaced.stop()

    med = statistics.median
    interval = ServeConfig.stream_interval
    s_rate, a_rate = med(x[0] for x in single), med(x[0] for x in anchor)
    s_tok, a_tok = med(x[1] for x in single), med(x[1] for x in anchor)
    one_m, eight_m = med(one), med(eight)
    decode_ratio, agg_ratio = s_rate / a_rate, eight_m / one_m
    unspaced_rate = med(unspaced_single)
    raw1_m, raw8_m = med(raw1), med(raw8)
    ceiling = raw8_m / raw1_m

    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load["statuses"].items())) or "none"
    conn = ", ".join(f"{k}: {v}" for k, v in sorted(load["errors"].items())) or "none"
    load_table = "\n".join([
        "| load test | value |", "|---|---:|",
        f"| concurrent streaming clients | {args.clients} |",
        f"| duration (sending) / wall until the last answer | {args.seconds:g} s / {load['wall']:.1f} s |",
        f"| max_tokens, temperature | {args.max_tokens}, 0.7 |",
        f"| requests completed | {load['requests']} |",
        f"| completion tokens | {load['tokens']} |",
        f"| aggregate throughput | {load['tps']:.1f} tok/s |",
        f"| time to first token p50 / p99 | {ms(load['ttft50'])} / {ms(load['ttft99'])} |",
        f"| latency p50 / p99 | {ms(load['lat50'])} / {ms(load['lat99'])} |",
        f"| HTTP errors by status | {errors} |",
        f"| connection errors | {conn} |",
        f"| tokens per decode step (server's batch) | {load['batch']:.2f} |",
    ])
    yes = lambda met: "yes" if met else "**no**"  # noqa: E731
    ratio_table = "\n".join([
        "| measure | taide serve | anchor | ratio | goal | met |", "|---|---:|---:|---:|---:|:---:|",
        f"| single-stream decode, tok/s (median tokens {s_tok:.0f} / {a_tok:.0f}) | {s_rate:.1f} | "
        f"{a_rate:.1f} (llama-cpp-python generate) | {decode_ratio:.2f}× | ≥ 0.95× | {yes(decode_ratio >= 0.95)} |",
        f"| the same with `--stream-interval 0` (one write per token) | {unspaced_rate:.1f} | {a_rate:.1f} | "
        f"{unspaced_rate / a_rate:.2f}× | | |",
        f"| aggregate tok/s, {STREAMS} streams together vs 1 stream | {eight_m:.1f} | {one_m:.1f} (1 stream) | "
        f"{agg_ratio:.2f}× | ≥ the ceiling below ({ceiling:.2f}×) | {yes(agg_ratio >= ceiling)} |",
        f"| ceiling of the row above: llama.cpp in-process, {STREAMS} sequences vs 1 (no server, no HTTP) | "
        f"{raw8_m:.1f} | {raw1_m:.1f} (1 sequence) | {ceiling:.2f}× | | |",
    ])
    print()
    print(load_table)
    print()
    print(ratio_table)
    command = (f".venv/bin/python -m bench.serve_load --clients {args.clients} --seconds {args.seconds:g} "
               f"--max-tokens {args.max_tokens} --runs {args.runs}")
    body = (f"## Serve: `taide serve {MODEL}` under load (llamacpp engine, CPU)\n\n"
            f"The server runs in its own process on {HOST}, with the model in a supervised process of its own (the "
            f"default: a crash of the engine costs only its requests), so every token crosses a pipe before the "
            f"socket; the client (httpx, asyncio) streams chat completions over SSE and times each answer from its "
            f"side.\n\n"
            f"**Load:** {args.clients} clients each send streamed requests back to back for {args.seconds:g} s "
            f"(short office prompts in Traditional Chinese and English, max_tokens {args.max_tokens}, temperature "
            f"0.7, usage from `stream_options.include_usage`); latency is from sending to `[DONE]`, throughput is "
            f"all completion tokens over the wall time.\n\n{load_table}\n\n"
            f"**Single stream and batching:** greedy, max_tokens {LONG_MAX_TOKENS}, {len(prompt_ids)} prompt tokens, "
            f"medians of {args.runs} runs, interleaved. Decode tok/s = (tokens − 1) / (last token − first token) "
            f"as the client sees the stream; the anchor is llama-cpp-python's own `generate` on the same GGUF and "
            f"prompt ids, with the engine's settings (every core, flash attention on), in the client process while "
            f"the server idles. The server runs with its defaults, which include a stream interval of "
            f"{interval * 1000:.0f} ms: after each write it waits that long before the next (the answer's end cuts "
            f"the wait short), so the tokens decoded meanwhile (about {interval * s_rate:.1f} at this rate) leave in "
            f"one write, each still its own event. The row below it is a second server with "
            f"`--stream-interval 0`, measured in the same runs. Aggregate = all tokens / (last token "
            f"received − first request sent), {STREAMS} requests sent together vs one alone (a server that answers "
            f"one request at a time stays at 1×; medians of tokens per decode step in the {STREAMS}-stream runs: "
            f"{med(batch8):.2f}). The last row is what llama.cpp itself gains from batching on this machine, measured "
            f"the same way in the client process (a context set up as the engine's, greedy, one llama_decode per step) "
            f"while the server idles: what batching can gain here at all (the server's ratio may come out a little "
            f"above it, as its 1-stream figure also pays for HTTP and the time to first token).\n\n{ratio_table}\n\n"
            f"Reproduce: `{command}`\n")
    if not args.no_write:
        write_section("serve", body)


if __name__ == "__main__":
    main()
