"""A stop request reaches every long loop at its next step, in whatever thread it runs: GAN and
detector training, the downstream classifier."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipelines.stopping import Stopped, check_stop, clear_stop, request_stop


@pytest.fixture(autouse=True)
def no_stop_left():
    clear_stop()
    yield
    clear_stop()


def images(n=40, classes=2, side=8):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, side, side), dtype=np.float32), np.arange(n) % classes


def stopped_in_a_thread(work) -> BaseException | None:
    """Run ``work`` in a worker thread (as compare runs its arms), request a stop once it has run
    for a while, and return what it raised (it would run for hours otherwise)."""
    raised: list[BaseException] = []

    def target():
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            raised.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(3.0)
    assert thread.is_alive(), "the work ended before the stop: it is too short for this test"
    request_stop("test")
    thread.join(60)
    assert not thread.is_alive(), "the loop did not stop"
    return raised[0] if raised else None


def test_check_stop_raises_only_after_a_request():
    check_stop()
    request_stop("SIGTERM")
    with pytest.raises(Stopped, match="SIGTERM"):
        check_stop()


def test_gan_training_in_a_worker_thread_stops_at_the_next_step():
    from gan_aug import GANOverSampler

    x, y = images()
    sampler = GANOverSampler(steps=1_000_000, random_state=0, judge_steps=0)
    assert isinstance(stopped_in_a_thread(lambda: sampler.fit(x, y)), Stopped)


def test_detector_training_stops_at_the_next_step():
    from anomaly import GANAnomalyDetector

    x, _ = images(60)
    detector = GANAnomalyDetector(epochs=100_000, random_state=0)
    assert isinstance(stopped_in_a_thread(lambda: detector.fit(x[:40], x[40:])), Stopped)


def test_classifier_training_stops_at_the_next_batch():
    from pipelines.evaluation.classifier import make_classifier

    x, y = images(64)
    model = make_classifier("cnn", epochs=100_000, random_state=0)
    assert isinstance(stopped_in_a_thread(lambda: model.fit(x, y, n_classes=2)), Stopped)
