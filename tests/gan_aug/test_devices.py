"""The device option reaches every model and tensor of the conditional GAN; its state is device-free."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

import gan_aug.train as gan_train
from gan_aug import GANOverSampler
from pipelines.data.sources import load_dataset
from pipelines.errors import GanpipeError

TINY = {"width": 8, "z_dim": 16, "batch_size": 16, "judge_steps": 3}
CUDA = torch.cuda.is_available()
# every part that touches a tensor: judge, guidance, label filter, memorisation rejection, LeCam, ADC head,
# the novelty filter, previews, checkpoints; the two objectives (the gradient penalty is WGAN-GP's)
EVERYTHING = {"guide_weight": 1.0, "filter_candidates": 2, "memorisation_rejection": 0.1, "lecam_weight": 0.1,
              "adc_weight": 0.5, "novelty_quantile": 0.1, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(ds.y == k)[: (6 if k == 3 else 30)] for k in range(4)])
    return ds.x[keep], ds.y[keep]


@pytest.fixture
def networks(monkeypatch) -> list:
    """The :class:`~gan_aug.train.Networks` of every run in the test (generator, critic, EMA, optimisers)."""
    made = []

    class Recorded(gan_train.Networks):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(gan_train, "Networks", Recorded)
    return made


def tensors_of(*modules) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": t for i, m in enumerate(modules) for name, t in [*m.named_parameters(), *m.named_buffers()]}


def devices_of(sampler: GANOverSampler, nets: list) -> set[str]:
    """The device types of every parameter, buffer and optimiser state of the run's networks and judge."""
    modules = [sampler.gan_.generator, *([sampler.gan_.judge] if sampler.gan_.judge is not None else [])]
    for run in nets:
        modules += [run.generator, run.discriminator, run.ema]
    found = {t.device.type for t in tensors_of(*modules).values()}
    for run in nets:
        found |= {t.device.type for opt in (run.opt_g, run.opt_d) for state in opt.state.values()
                  for key, t in state.items() if key != "step"}  # Adam keeps its step count on the CPU by design
    return found


def tensors_in(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for value in state.values() for t in tensors_in(value)]
    if isinstance(state, (list, tuple)):
        return [t for value in state for t in tensors_in(value)]
    return []


# the optional terms that are off by default: the class feature pulls and the class-aware autoencoder code
OPTIONAL = {"feature_match_weight": 1.0, "feature_match": "nearest", "autoencoder_label_weight": 1.0}


@pytest.mark.parametrize("loss, options", [("hinge", {}), ("wgan-gp", {}), ("hinge", OPTIONAL),
                                           ("hinge", {**OPTIONAL, "feature_match": "mean"})])
def test_nothing_is_made_on_the_default_device_when_another_is_asked_for(digits, networks, loss, options, tmp_path):
    x, y = digits
    previews = []
    before = torch.get_default_device()
    torch.set_default_device("meta")  # a tensor made without device= lands here and cannot be computed with
    try:
        sampler = GANOverSampler(device="cpu", steps=3, loss=loss, **TINY, **EVERYTHING, **options, random_state=0,
                                 checkpoint_path=tmp_path / "gan.pt",
                                 preview=lambda step, images, labels: previews.append(images))
        x_res, y_res = sampler.fit_resample(x, y)
        again = GANOverSampler.from_state_dict(sampler.state_dict(), device="cpu").generate([3, 3, 0], seed=1)
    finally:
        # None when it was the CPU: setting "cpu" would leave a device mode on for every later test
        torch.set_default_device(None if before == torch.device("cpu") else before)
    assert sampler.device_ == torch.device("cpu")
    assert devices_of(sampler, networks) == {"cpu"} and len(networks) == 1
    assert np.isfinite(x_res).all() and np.bincount(y_res).tolist() == [30] * 4
    assert isinstance(again, np.ndarray) and again.shape == (3, 1, 8, 8) and np.isfinite(again).all()
    assert previews and all(isinstance(p, np.ndarray) for p in previews)


def test_state_and_checkpoints_hold_cpu_tensors_only(digits, tmp_path):
    x, y = digits
    sampler = GANOverSampler(device="cpu", steps=2, **TINY, random_state=0, checkpoint_path=tmp_path / "gan.pt",
                             checkpoint_every=1).fit(x, y)
    state = sampler.state_dict()
    assert "device" not in state["params"]  # the device is the loading host's
    assert tensors_in(state) and {t.device.type for t in tensors_in(state)} == {"cpu"}
    saved = torch.load(tmp_path / "gan.pt", weights_only=True)
    assert set(saved) >= {"generator", "discriminator", "ema", "opt_g", "opt_d", "rng"}
    assert {t.device.type for t in tensors_in(saved)} == {"cpu"}
    loaded = GANOverSampler.from_state_dict(state)  # "auto" on this host
    assert loaded.device_ == loaded.gan_.device and loaded.device == "auto"
    np.testing.assert_array_equal(loaded.generate([0, 3], seed=2), sampler.generate([0, 3], seed=2))


def test_device_is_a_checked_parameter():
    assert GANOverSampler().device == "auto"
    for spec in ("cpu", "CUDA:1", "mps", "auto"):
        GANOverSampler(device=spec)._validate_params()
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        GANOverSampler(device="tpu")._validate_params()


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_fails_at_fit_in_one_line(digits):
    x, y = digits
    with pytest.raises(GanpipeError, match="no CUDA GPU is available") as failure:
        GANOverSampler(device="cuda", steps=1, **TINY).fit(x, y)
    assert "\n" not in str(failure.value)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_trained_on_cuda_with_bf16_loads_and_samples_on_the_cpu(digits, networks, loss, tmp_path):
    x, y = digits
    sampler = GANOverSampler(device="cuda", steps=4, loss=loss, **TINY, **EVERYTHING, random_state=0,
                             checkpoint_path=tmp_path / "gan.pt")
    x_res, _ = sampler.fit_resample(x, y)
    assert sampler.device_.type == "cuda" and devices_of(sampler, networks) == {"cuda"}
    # bf16 autocast in training, float32 weights and float32 losses
    assert {t.dtype for t in tensors_of(sampler.gan_.generator).values() if t.is_floating_point()} == {torch.float32}
    assert all(np.isfinite([h["d_loss"], h["g_total_loss"]]).all() for h in sampler.gan_.history)
    assert np.isfinite(x_res).all()
    state = sampler.state_dict()
    assert {t.device.type for t in tensors_in(state)} == {"cpu"}
    on_cpu = GANOverSampler.from_state_dict(state, device="cpu")
    images = on_cpu.generate([3, 3, 0, 1], seed=4)
    assert isinstance(images, np.ndarray) and on_cpu.gan_.generator.embed.weight.device.type == "cpu"
    # sampling is float32 on both devices: the same latents give nearly the same images
    np.testing.assert_allclose(images, sampler.generate([3, 3, 0, 1], seed=4), atol=1e-3)
    # a pickle (a Dask worker's copy) holds CPU tensors too, and leaves the sampler on its GPU
    unpickled = pickle.loads(pickle.dumps(sampler))
    assert unpickled.device_.type == "cpu" and unpickled.gan_.generator.embed.weight.device.type == "cpu"
    assert sampler.gan_.generator.embed.weight.device.type == "cuda"
    np.testing.assert_allclose(unpickled.generate([3, 3, 0, 1], seed=4), images, atol=1e-5)
    # and the reverse: a CPU-trained sampler samples on the GPU
    cpu_trained = GANOverSampler(device="cpu", steps=2, **TINY, random_state=0).fit(x, y)
    on_gpu = GANOverSampler.from_state_dict(cpu_trained.state_dict(), device="cuda")
    assert on_gpu.gan_.generator.embed.weight.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.generate([0, 3], seed=5), cpu_trained.generate([0, 3], seed=5), atol=1e-3)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_cuda_checkpoint_resumes_on_the_cpu(digits, tmp_path):
    x, y = digits
    path = tmp_path / "gan.pt"
    trained = GANOverSampler(device="cuda", steps=2, **TINY, random_state=0, checkpoint_path=path).fit(x, y)
    # the device is not part of the checkpoint's config: the CPU run resumes at the end of the CUDA run
    resumed = GANOverSampler(device="cpu", steps=2, **TINY, random_state=0, checkpoint_path=path).fit(x, y)
    assert resumed.gan_.history == trained.gan_.history
    assert resumed.gan_.generator.embed.weight.device.type == "cpu"
