"""A big request in one thread and one-text bystander requests in a loop until it is answered: whether the
bystanders got through while it ran (liveness, not wall-clock bounds: a busy machine stretches everything)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests


@dataclass
class Outcome:
    response: requests.Response
    seconds: float  # the big request's
    slowest: float  # the slowest bystander's
    answered_before: int  # bystanders answered before the big request was


def while_running(big: Callable[[], requests.Response], bystander: Callable[[], None]) -> Outcome:
    """`bystander` sends its requests and asserts their answers; it runs again until `big` is answered."""
    result: dict = {}
    done = threading.Event()

    def send():
        started = time.monotonic()
        try:
            result["response"] = big()
        finally:
            result["seconds"] = time.monotonic() - started
            done.set()

    sender = threading.Thread(target=send)
    sender.start()
    slowest, answered_before = 0.0, 0
    while not done.is_set():
        started = time.monotonic()
        bystander()
        slowest = max(slowest, time.monotonic() - started)
        answered_before += not done.is_set()
    sender.join()
    return Outcome(result["response"], result["seconds"], slowest, answered_before)


def one_text(url: str) -> Callable[[], None]:
    def send():
        response = requests.post(url + "/embed_text", json={"texts": "a bystander"}, timeout=300)
        assert response.status_code == 200

    return send


@contextlib.contextmanager
def answered_throughout(url: str):
    """One-text /embed_text requests in a loop while the block runs (hostile requests, say); after it, asserts
    that some were sent and every one was answered 200."""
    answers: list[int] = []
    done = threading.Event()

    def loop():
        with requests.Session() as session:
            while not done.is_set():
                answers.append(
                    session.post(url + "/embed_text", json={"texts": ["still here"]}, timeout=300).status_code
                )

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield answers
    finally:
        done.set()
        thread.join(timeout=300)
    assert answers and set(answers) == {200}, answers[-5:]
