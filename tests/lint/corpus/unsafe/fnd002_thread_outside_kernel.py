# ruff: noqa
"""FND002: threads, processes and executors started outside the kernel."""

import _thread
import asyncio
import concurrent.futures
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from threading import Thread
from threading import Thread as T


def blocking() -> None: ...


async def spawn(loop: asyncio.AbstractEventLoop) -> None:
    threading.Thread(target=blocking).start()  # expect: FND002
    Thread(target=blocking, daemon=True).start()  # expect: FND002
    T(target=blocking).start()  # expect: FND002
    threading.Timer(1.0, blocking).start()  # expect: FND002
    await loop.run_in_executor(None, blocking)  # expect: FND002
    await asyncio.get_running_loop().run_in_executor(None, blocking)  # expect: FND002
    with ThreadPoolExecutor() as pool:  # expect: FND002
        pool.submit(blocking)
    ProcessPoolExecutor(max_workers=2)  # expect: FND002
    concurrent.futures.ThreadPoolExecutor()  # expect: FND002
    await asyncio.to_thread(blocking)  # expect: FND002
    _thread.start_new_thread(blocking, ())  # expect: FND002
    multiprocessing.Process(target=blocking).start()  # expect: FND002
