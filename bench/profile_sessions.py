import asyncio, os, sys, time, cProfile, pstats
sys.path.insert(0, "/work/main/bench")
os.environ["BENCH_VARIANT"] = sys.argv[1]
os.environ["BENCH_DATABASE_URL"] = "sqlite:////tmp/prof.db"
import apps_sessions
app = apps_sessions.app

async def call(cookie):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/hit", "raw_path": b"/hit", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost")] + ([(b"cookie", cookie)] if cookie else []),
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000), "app": app}
    out = []
    async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
    async def send(m): out.append(m)
    await app(scope, receive, send)
    for k, v in out[0]["headers"]:
        if k == b"set-cookie": return v.split(b";")[0]
    return cookie

async def main():
    # lifespan
    q = asyncio.Queue(); await q.put({"type": "lifespan.startup"})
    sent = []
    async def lrecv(): return await q.get()
    async def lsend(m): sent.append(m)
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "app": app}, lrecv, lsend))
    while not sent: await asyncio.sleep(0.01)
    cookie = await call(None)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    t = time.perf_counter()
    for _ in range(n): cookie = await call(cookie)
    dt = time.perf_counter() - t
    print(sys.argv[1], f"{dt/n*1e6:.1f} us/request")
    if len(sys.argv) > 3:
        pr = cProfile.Profile(); pr.enable()
        for _ in range(2000): cookie = await call(cookie)
        pr.disable(); pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
    await q.put({"type": "lifespan.shutdown"}); await task
asyncio.run(main())
