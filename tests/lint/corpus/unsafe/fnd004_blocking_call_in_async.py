# ruff: noqa
"""FND004: blocking calls made directly in coroutines."""

import os
import socket
import subprocess
import time
import time as t
import urllib.request
from time import sleep
from urllib.request import urlopen

import httpx
import requests


async def handler(url: str) -> None:
    time.sleep(0.1)  # expect: FND004, FND005
    t.sleep(0.5)  # expect: FND004, FND005
    sleep(2)  # expect: FND004, FND005
    requests.get(url)  # expect: FND004
    requests.post(url, json={})  # expect: FND004
    urllib.request.urlopen(url)  # expect: FND004
    urlopen(url)  # expect: FND004
    subprocess.run(["ls"])  # expect: FND004
    subprocess.check_output(["ls"])  # expect: FND004
    subprocess.getoutput("ls")  # expect: FND004
    os.system("ls")  # expect: FND004
    os.popen("ls")  # expect: FND004
    os.wait()  # expect: FND004
    socket.create_connection(("localhost", 80))  # expect: FND004
    httpx.get(url)  # expect: FND004
    input("name? ")  # expect: FND004
    data = [requests.get(u) for u in (url,)]  # expect: FND004


class Client:
    async def fetch(self, url: str) -> bytes:
        return requests.get(url).content  # expect: FND004
