"""Tests of SpecViTRegressor: data contract, training recipe, ecosystem, resume, DDP, errors.

Spectra are synthesised here (the real grid is not needed): Gaussian absorption lines on a
sloped continuum whose depths and widths depend on (T_eff, log g, M_H).
"""

import inspect
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_validate, learning_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import _check_name, estimator_checks_generator
from skorch.callbacks import GradientNormClipping

from specreg.estimators import SpecViTRegressor, _vit_callbacks
from specreg.estimators import _vit as vit_impl
from specreg.estimators._vit import vit_expected_failed_checks
from specreg.estimators._vit_module import ARCHITECTURE_PARAMS, SpecViT

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # seed everything; one torch thread because the test machine is shared (torch's spinning
    # OpenMP workers slow small models down several-fold under contention)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)


def make_synthetic_spectra(n, n_pix=256, seed=0):
    """Noiseless toy spectra: flux, 1-sigma error (both (n, n_pix)) and labels (n, 3)."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 6000, n)
    logg = rng.uniform(1, 5, n)
    mh = rng.uniform(-2.5, 0.75, n)
    wave = np.linspace(5000.0, 5500.0, n_pix)
    centres = np.random.default_rng(1234).uniform(5010, 5490, 24)  # a fixed line list
    kind = np.arange(24) % 3  # metal-, gravity- and temperature-sensitive lines
    t = (teff[:, None] - 5000) / 1000
    g = (logg[:, None] - 3) / 2
    m = mh[:, None]
    depth = np.where(
        kind == 0,
        0.35 * 10 ** (0.3 * m) * (1 - 0.3 * t),
        np.where(
            kind == 1,
            0.3 * (1 + 0.4 * m.clip(-1)) * (1 - 0.5 * g + 0.2 * t),
            0.4 * (1 + 0.6 * t) * 10 ** (0.2 * m),
        ),
    ).clip(0.02, 0.9)
    width = np.where(kind == 1, 1.5 * (1 + 0.6 * g), 1.0 + 0.2 * t + 0.1 * g)  # pressure
    profile = np.exp(-0.5 * ((wave - centres[None, :, None]) / width[:, :, None]) ** 2)
    continuum = 1 + 0.1 * t * (wave - 5250) / 250
    flux = continuum * np.prod(1 - depth[:, :, None] * profile, axis=1)
    error = flux * rng.uniform(0.02, 0.1, (n, 1)) + 0.005
    labels = np.stack([teff, logg, mh], axis=1)
    return flux.astype(np.float32), error.astype(np.float32), labels.astype(np.float32)


def tiny(**kw):
    """A fast configuration (~5k parameters) for behaviour tests."""
    params = dict(
        patch_size=16,
        hidden_size=16,
        depth=1,
        heads=2,
        max_epochs=2,
        batch_size=32,
        lr=3e-3,
        device="cpu",
        random_state=0,
    )
    params.update(kw)
    return SpecViTRegressor(**params)


@pytest.fixture(scope="module")
def data():
    flux, error, labels = make_synthetic_spectra(160, n_pix=64, seed=1)
    X = np.hstack([flux, error])
    return X, labels[:, 1], labels


# --------------------------------------------------------------------------------------
# scikit-learn common checks (they run once, for noise_level=0, in tests/test_common.py)
# --------------------------------------------------------------------------------------
def test_expected_failures_only_for_odd_widths_and_negative_errors():
    assert SpecViTRegressor(noise_level=0)._expected_failed_checks() == {}
    failed = SpecViTRegressor(noise_level=1.0)._expected_failed_checks()
    assert failed and all(("odd" in r) or ("negative" in r) for r in failed.values())


def test_expected_failures_with_noise_are_the_stacked_input_refusals():
    # the checks listed for noise_level > 0 fail, and for the reason given: X is refused
    # (odd width, negative errors) before anything trains
    est = SpecViTRegressor(noise_level=1.0, patch_size=4, hidden_size=8, depth=1, heads=2)
    expected = est._expected_failed_checks()
    refusal = re.compile(r"odd width|not >= 0")
    seen = set()
    for estimator, check in estimator_checks_generator(est, legacy=True):
        name = _check_name(check)
        if name not in expected:
            continue
        seen.add(name)
        with warnings.catch_warnings(), pytest.raises(Exception) as info:
            warnings.simplefilter("ignore", UserWarning)
            check(estimator)
        # the refusal itself, or the check's AssertionError raised from it
        errors, exc = [], info.value
        while exc is not None:
            errors.append(exc)
            exc = exc.__cause__ or exc.__context__
        assert any(isinstance(e, ValueError) and refusal.search(str(e)) for e in errors), (
            name,
            errors,
        )
    assert seen == set(expected)


def test_vit_expected_failed_checks_is_deprecated():
    est = SpecViTRegressor(noise_level=1.0)
    with pytest.warns(FutureWarning, match="vit_expected_failed_checks is deprecated"):
        table = vit_expected_failed_checks(est)
    assert table == est._expected_failed_checks()


def test_negative_errors_are_refused_with_rows_and_pixels(data):
    X, y, _ = data
    bad = X.copy()
    bad[4, X.shape[1] // 2 + 9] = -0.01
    with pytest.raises(ValueError, match=r"not >= 0 at \(row, pixel\) \(4, 9\)"):
        tiny().fit(bad, y)


# --------------------------------------------------------------------------------------
# learning
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokenizer", ["conv", "sliding"])
def test_learns_log_g_from_noiseless_spectra(tokenizer):
    flux, _, labels = make_synthetic_spectra(2500, n_pix=256, seed=0)
    reg = SpecViTRegressor(
        patch_size=16,
        tokenizer=tokenizer,
        stride=8,
        hidden_size=32,
        depth=2,
        heads=4,
        max_epochs=8,
        batch_size=64,
        lr=2e-3,
        dropout=0.0,
        noise_level=0,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    reg.fit(flux[:2000], labels[:2000, 1])
    elapsed = time.perf_counter() - start
    r2 = r2_score(labels[2000:, 1], reg.predict(flux[2000:]))
    print(f"tokenizer={tokenizer}: R2(log g)={r2:.4f} in {elapsed:.1f} s")
    assert r2 >= 0.9


@pytest.mark.slow
def test_learns_with_noise_augmentation_and_default_recipe_pieces():
    # the full path: [flux | error] input, per-batch noise, warm-up, validation split,
    # early stopping, L1 loss, wavelength positional code and mean pooling
    flux, error, labels = make_synthetic_spectra(4500, n_pix=256, seed=0)
    X = np.hstack([flux, error])
    reg = SpecViTRegressor(
        patch_size=16,
        hidden_size=32,
        depth=2,
        heads=4,
        max_epochs=20,
        batch_size=64,
        lr=2e-3,
        warmup_epochs=1,
        loss="l1",
        noise_level=0.5,
        pooling="mean",
        pos_encoding="wavelength",
        wave=np.linspace(5000.0, 5500.0, 256),
        validation_fraction=0.1,
        early_stopping=True,
        patience=5,
        device="cpu",
        random_state=0,
    ).fit(X[:4000], labels[:4000, 1])
    # test flux is noiseless here; the model was trained on noisy copies
    assert r2_score(labels[4000:, 1], reg.predict(X[4000:])) >= 0.9


# --------------------------------------------------------------------------------------
# data contract: noise, shapes, dtypes, labels
# --------------------------------------------------------------------------------------
def test_noise_is_fresh_per_batch_and_scaled_by_error(data, monkeypatch):
    X, y, _ = data
    n_pix = X.shape[1] // 2
    seen = []
    real_forward = vit_impl.SpecViT.forward

    def spy(module, flux):
        if module.training:
            seen.append(flux.detach().clone())
        return real_forward(module, flux)

    monkeypatch.setattr(vit_impl.SpecViT, "forward", spy)
    # identical rows, so shuffling does not matter when we undo the noise
    X1 = np.repeat(X[:1], 32, axis=0)
    reg = tiny(noise_level=2.0, batch_size=32, max_epochs=2).fit(X1, y[:32])
    assert len(seen) == 2  # one batch per epoch
    flux, error = torch.from_numpy(X1[:, :n_pix]), torch.from_numpy(X1[:, n_pix:])
    z = [(batch - flux) / (2.0 * error) for batch in seen]
    for zi in z:  # noise_level * error * N(0, 1)
        assert abs(float(zi.std()) - 1.0) < 0.05 and abs(float(zi.mean())) < 0.05
    assert not torch.allclose(z[0], z[1])  # a fresh draw in every batch
    assert reg.n_pix_ == n_pix


def test_noise_model_gives_the_physical_per_batch_noise(monkeypatch):
    from specreg.spectra import PFSNoiseModel, pfs_mr_wave

    noise = PFSNoiseModel(pfs_mr_wave(64))
    flux = np.repeat(0.5 - 0.3 * np.exp(-0.5 * ((np.arange(64) - 32) / 3.0) ** 2)[None], 64, 0)
    flux = flux.astype(np.float32)
    X = np.hstack([flux, noise.reference_error(np.full(64, 2.0))])
    seen = []
    real_forward = vit_impl.SpecViT.forward

    def spy(module, batch):
        if module.training:
            seen.append(batch.detach().clone())
        return real_forward(module, batch)

    monkeypatch.setattr(vit_impl.SpecViT, "forward", spy)
    tiny(noise_model=noise, batch_size=64, max_epochs=3).fit(X, np.linspace(1, 5, 64))
    sigma = torch.from_numpy(noise.true_error(flux, X[:, 64:]))
    z = torch.cat([(b - torch.from_numpy(flux)) / sigma for b in seen])
    assert abs(float(z.std()) - 1.0) < 0.03
    # the line core is less noisy than the reported (continuum) error says
    assert float(sigma[0, 32]) < 0.95 * float(X[0, 64 + 32])
    with pytest.raises(ValueError, match="reference errors"):
        tiny(noise_model=noise).fit(np.hstack([flux, np.full_like(flux, 0.1)]), np.ones(64))


def test_predict_and_validation_use_flux_half_as_given(data):
    X, y, _ = data
    n_pix = X.shape[1] // 2
    reg = tiny(noise_level=1.0).fit(X, y)
    X_other_error = X.copy()
    X_other_error[:, n_pix:] *= 100.0
    np.testing.assert_array_equal(reg.predict(X), reg.predict(X_other_error))
    # the flux-only model on the same flux gives the same kind of output
    assert reg.predict(X).shape == y.shape


def test_noise_level_zero_takes_flux_only(data):
    X, y, _ = data
    flux = X[:, : X.shape[1] // 2]
    reg = tiny(noise_level=0).fit(flux, y)
    assert reg.n_pix_ == flux.shape[1] == reg.n_features_in_
    assert reg.predict(flux).shape == y.shape


def test_pipeline_after_noise_transformer(data):
    X, y, _ = data
    try:
        from specreg.estimators import HeteroscedasticNoise
    except ImportError:  # written in a parallel issue; use an equivalent transformer
        HeteroscedasticNoise = None
    n_pix = X.shape[1] // 2
    noise = (
        HeteroscedasticNoise(noise_level=1.0, random_state=0)
        if HeteroscedasticNoise is not None
        else FunctionTransformer(lambda A: A[:, :n_pix])
    )
    pipe = make_pipeline(noise, tiny(noise_level=0)).fit(X, y)
    assert pipe.predict(X).shape == y.shape


def test_target_shape_pins_broadcasting_trap(data):
    """(N, 1) predictions against (N,) targets would broadcast to (N, N) in MSELoss."""
    X, y, _ = data
    flux = X[:, : X.shape[1] // 2]
    reg_1d = tiny(noise_level=0).fit(flux, y)
    reg_2d = tiny(noise_level=0).fit(flux, y[:, None])
    p1, p2 = reg_1d.predict(flux), reg_2d.predict(flux)
    assert p1.shape == (len(y),) and p2.shape == (len(y), 1)
    np.testing.assert_allclose(p1, p2.ravel(), rtol=1e-6, atol=1e-6)
    # the silent failure this guards against
    pred, target = torch.zeros(4, 1), torch.arange(4.0)
    with pytest.warns(UserWarning, match="broadcast"):
        torch.nn.functional.mse_loss(pred, target)
    with pytest.raises(ValueError, match="broadcast"):
        reg_1d.net_.get_loss(pred, target)


def test_multioutput_and_label_standardisation(data):
    X, _, labels = data
    reg = tiny(noise_level=1.0).fit(X, labels)
    assert reg.predict(X).shape == labels.shape
    np.testing.assert_allclose(reg.y_mean_, labels.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(reg.y_scale_, labels.std(axis=0), rtol=1e-5)  # population
    # the inverse transform is applied to the network output
    raw = reg.net_.predict(X)
    np.testing.assert_allclose(reg.predict(X), raw * reg.y_scale_ + reg.y_mean_, rtol=1e-6)
    # a constant target has scale 1 (not 0) and is predicted near the constant
    const = tiny(noise_level=1.0).fit(X, np.full(len(X), 3.5))
    assert const.y_scale_[0] == 1.0
    np.testing.assert_allclose(const.predict(X), 3.5, atol=0.1)


def test_float64_input_is_cast(data):
    X, y, _ = data
    reg = tiny().fit(X.astype(np.float64), y.astype(np.float64))
    assert next(reg.module_.parameters()).dtype == torch.float32
    np.testing.assert_array_equal(reg.predict(X.astype(np.float64)), reg.predict(X))


def test_reproducible_and_leaves_global_rng_alone(data):
    X, y, _ = data
    state = torch.get_rng_state()
    p1 = tiny(dropout=0.1).fit(X, y).predict(X)
    assert torch.equal(state, torch.get_rng_state())
    p2 = tiny(dropout=0.1).fit(X, y).predict(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = tiny(dropout=0.1, random_state=1).fit(X, y).predict(X)
    assert not np.array_equal(p1, p3)


# --------------------------------------------------------------------------------------
# training recipe
# --------------------------------------------------------------------------------------
def test_cosine_schedule_with_warmup_reaches_min_lr(data):
    X, y, _ = data
    reg = tiny(max_epochs=6, batch_size=40, lr=1e-3, min_lr=1e-5, warmup_epochs=2).fit(X, y)
    lrs = [row["lr"] for row in reg.history_]
    assert lrs[0] == pytest.approx(1e-3 / 2)  # halfway through the warm-up (4 of 8 steps)
    assert lrs[1] == pytest.approx(1e-3)  # peak at the end of the warm-up
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    sched = _vit_callbacks._WarmupCosineLR(1e-3, 1e-5, warmup_steps=8, total_steps=24)
    assert sched.lr_at(24) == pytest.approx(1e-5)


def n_train_rows(reg):
    return sum(batch.get("train_batch_size", 0) for batch in reg.history_[-1]["batches"])


def test_validation_split_is_explicit(data):
    X, y, _ = data
    reg = tiny().fit(X, y)
    assert "valid_loss" not in reg.history_[-1]  # never skorch's silent 20 %
    assert n_train_rows(reg) == len(X)
    reg = tiny(validation_fraction=0.25).fit(X, y)
    assert "valid_loss" in reg.history_[-1]
    assert n_train_rows(reg) == len(X) - 40


def test_early_stopping_restores_best(data):
    X, _, _ = data
    rng = np.random.default_rng(0)
    y_noise = rng.standard_normal(len(X))  # nothing to learn: valid loss stops improving
    reg = tiny(
        max_epochs=60, lr=1e-2, validation_fraction=0.3, early_stopping=True, patience=2
    ).fit(X, y_noise)
    assert reg.n_epochs_ < 60


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_loss_choice(data, loss):
    X, y, _ = data
    reg = tiny(loss=loss).fit(X, y)
    expected = torch.nn.MSELoss if loss == "mse" else torch.nn.L1Loss
    assert isinstance(reg.net_.criterion_, expected)


def test_bf16_autocast_on_cpu(data):
    X, y, _ = data
    reg = tiny(amp="bf16").fit(X, y)
    pred = reg.predict(X)
    assert pred.dtype == np.float64 and np.isfinite(pred).all()
    assert next(reg.module_.parameters()).dtype == torch.float32


def test_predict_runs_under_inference_mode(data, monkeypatch):
    X, y, _ = data
    reg = tiny().fit(X, y)
    modes = []
    real_forward = vit_impl.SpecViT.forward

    def spy(module, flux):
        modes.append((torch.is_inference_mode_enabled(), module.training, flux.shape[0]))
        return real_forward(module, flux)

    monkeypatch.setattr(vit_impl.SpecViT, "forward", spy)
    reg.predict(X)
    assert modes == [(True, False, 32)] * 5  # batched (batch_size 32), eval mode


def test_progress_bar_and_verbose(data, capsys):
    X, y, _ = data
    tiny(progress_bar=True, verbose=1, max_epochs=1).fit(X, y)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out


def test_gradient_clipping_is_applied(data, monkeypatch):
    X, y, _ = data
    norms = []
    real = torch.optim.AdamW.step

    def spy(self, *a, **k):
        # the global gradient norm that the optimizer steps with
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        norms.append(float(torch.linalg.vector_norm(torch.cat([g.ravel() for g in grads]))))
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    reg = tiny(grad_clip=0.25, max_epochs=1).fit(X, y)
    assert len(norms) == 5 and max(norms) <= 0.25 * (1 + 1e-5)
    assert isinstance(dict(reg.net_.callbacks)["gradient_clipping"], GradientNormClipping)
    norms.clear()
    reg = tiny(grad_clip=None, max_epochs=1).fit(X, y)
    assert len(norms) == 5 and max(norms) > 0.25
    assert "gradient_clipping" not in dict(reg.net_.callbacks)


def test_training_uses_skorchs_train_step(data, monkeypatch):
    # one override point for the gradients (train_step_single), skorch's loop around it
    X, y, _ = data
    assert "train_step" not in vars(vit_impl._SpecViTNet)
    calls = []
    real = vit_impl._SpecViTNet.train_step_single

    def spy(net, batch, **fit_params):
        calls.append(len(batch[0]))
        return real(net, batch, **fit_params)

    monkeypatch.setattr(vit_impl._SpecViTNet, "train_step_single", spy)
    tiny(max_epochs=1).fit(X, y)
    assert calls == [32] * 5


def test_architecture_parameters_are_the_modules(data):
    # the regressor has every SpecViT architecture keyword, with the same default, and
    # passes it on unchanged
    module = inspect.signature(SpecViT).parameters
    regressor = inspect.signature(SpecViTRegressor).parameters
    assert [n for n in module if n in ARCHITECTURE_PARAMS] == list(ARCHITECTURE_PARAMS)
    for name in ARCHITECTURE_PARAMS:
        assert regressor[name].default == module[name].default, name
    X, y, _ = data
    wave = np.linspace(5000.0, 5500.0, 64)
    arch = dict(tokenizer="sliding", stride=4, pooling="mean", pos_encoding="wavelength")
    reg = tiny(mlp_ratio=2.0, dropout=0.0, wave=list(wave), max_epochs=1, **arch).fit(X, y)
    params = reg.net_.get_params()
    for name in ARCHITECTURE_PARAMS:
        expected = getattr(reg, name)
        if name == "wave":
            np.testing.assert_array_equal(params["module__wave"], wave)
            assert params["module__wave"].dtype == np.float64
        else:
            assert params[f"module__{name}"] == expected, name
    assert reg.module_.tokenizer.stride == 4 and reg.module_.pooling == "mean"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"tokenizer": "fft"}, "tokenizer must be one of"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"pos_encoding": "rope"}, "pos_encoding must be one of"),
        (
            {"tokenizer": "sliding", "stride": 17},
            "stride must be an integer in [1, patch_size=16]",
        ),
        ({"depth": 0}, "depth must be a positive integer"),
    ],
)
def test_architecture_is_checked_before_training(data, monkeypatch, kw, match):
    X, y, _ = data
    built = []
    monkeypatch.setattr(vit_impl, "_SpecViTNet", lambda *a, **k: built.append(k))
    with pytest.raises(ValueError, match=re.escape(match)):
        tiny(**kw).fit(X, y)
    assert built == []


def test_checkpoint_writes_leave_no_temporary_files(data, tmp_path):
    X, y, _ = data
    reg = tiny(checkpoint_dir=tmp_path, validation_fraction=0.25).fit(X, y)
    run = reg.checkpoint_path_.parent
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "fingerprint.json", "last.pt"]
    assert (
        json.loads((run / "fingerprint.json").read_text())
        == torch.load(run / "last.pt", weights_only=False)["fingerprint"]
    )


@pytest.mark.slow
def test_torch_compile(data):
    X, y, _ = data
    reg = tiny(compile=True, max_epochs=1).fit(X, y)
    pred = reg.predict(X)
    assert np.isfinite(pred).all()
    assert reg.net_._compiled and type(reg.module_).__name__ == "SpecViT"
    eager = pickle.loads(pickle.dumps(reg))
    eager.net_.compile_module = False  # same weights, no compiled wrapper
    np.testing.assert_allclose(eager.predict(X), pred, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------
# ecosystem
# --------------------------------------------------------------------------------------
def test_clone_gridsearch_cross_validate_learning_curve(data):
    X, y, _ = data
    est = tiny(max_epochs=1)
    assert clone(est).get_params() == est.get_params()
    gs = GridSearchCV(est, {"hidden_size": [8, 16]}, cv=2).fit(X, y)
    assert gs.best_params_["hidden_size"] in (8, 16)
    res = cross_validate(est, X, y, cv=2, scoring="r2")
    assert len(res["test_score"]) == 2
    sizes, train_scores, _ = learning_curve(est, X, y, cv=2, train_sizes=[0.5, 1.0])
    assert train_scores.shape == (2, 2)


def test_pickle_and_joblib_round_trip(data, tmp_path):
    X, y, _ = data
    reg = tiny().fit(X, y)
    pred = reg.predict(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reg)).predict(X), pred)
    joblib.dump(reg, tmp_path / "vit.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "vit.joblib").predict(X), pred)


# --------------------------------------------------------------------------------------
# checkpointing and resume
# --------------------------------------------------------------------------------------
class _Crash(Exception):
    pass


def test_resume_after_crash_matches_uninterrupted_run(data, tmp_path, monkeypatch):
    X, y, _ = data
    params = dict(max_epochs=5, dropout=0.1, checkpoint_dir=tmp_path / "ckpt", resume=True)
    full = tiny(**{**params, "checkpoint_dir": tmp_path / "full"}).fit(X, y)

    real = _vit_callbacks._EpochCheckpoint.on_epoch_end

    def crash_after_epoch_3(self, net, **kwargs):
        real(self, net, **kwargs)
        if len(net.history) == 3:
            raise _Crash

    monkeypatch.setattr(_vit_callbacks._EpochCheckpoint, "on_epoch_end", crash_after_epoch_3)
    with pytest.raises(_Crash):
        tiny(**params).fit(X, y)
    monkeypatch.undo()
    assert len(list((tmp_path / "ckpt").glob("*/last.pt"))) == 1

    resumed = tiny(**params).fit(X, y)
    assert resumed.n_epochs_ == 5
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3, 4, 5]
    # model, optimizer, schedule and RNG state were restored: nothing was lost
    np.testing.assert_allclose(resumed.predict(X), full.predict(X), rtol=1e-5, atol=1e-6)
    assert [r["lr"] for r in resumed.history_] == pytest.approx([r["lr"] for r in full.history_])


def test_resume_with_a_different_architecture_trains_afresh(data, tmp_path):
    X, y, _ = data
    first = tiny(checkpoint_dir=tmp_path, max_epochs=1).fit(X, y)
    with pytest.warns(UserWarning, match="parameter hidden_size differs"):
        other = tiny(checkpoint_dir=tmp_path, resume=True, hidden_size=32).fit(X, y)
    assert other.n_epochs_ == 2 and other.module_ is not first.module_
    assert other.checkpoint_path_ != first.checkpoint_path_
    assert other.checkpoint_path_.exists() and first.checkpoint_path_.exists()


def test_best_checkpoint_written_with_validation(data, tmp_path):
    X, y, _ = data
    reg = tiny(checkpoint_dir=tmp_path, validation_fraction=0.25).fit(X, y)
    run = reg.checkpoint_path_.parent
    assert run.parent == tmp_path and re.fullmatch(r"[0-9a-f]{12}", run.name)
    assert (run / "best.pt").exists() and (run / "last.pt").exists()
    assert (run / "fingerprint.json").exists()
    assert not (tmp_path / "last.pt").exists()


def _count_training(monkeypatch):
    """Record the epochs of every ``partial_fit`` (i.e. every fit that trains)."""
    calls = []
    real = vit_impl._SpecViTNet.partial_fit

    def spy(net, X, y=None, classes=None, **fit_params):
        calls.append(fit_params.get("epochs"))
        return real(net, X, y, classes, **fit_params)

    monkeypatch.setattr(vit_impl._SpecViTNet, "partial_fit", spy)
    return calls


def _weights(reg):
    return torch.cat([p.detach().ravel() for p in reg.module_.parameters()])


def test_resume_on_other_data_trains_again(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    kw = dict(checkpoint_dir=tmp_path, resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # an empty checkpoint_dir: nothing to say
        first = tiny(**kw).fit(X[:80], y[:80])
    saved = first.checkpoint_path_.read_bytes()
    with pytest.warns(UserWarning, match="data differ") as record:
        second = tiny(**kw).fit(X[80:], y[80:])
    message = str(record[0].message)
    assert str(first.checkpoint_path_) in message and "from scratch" in message
    assert calls == [2, 2]  # both fits trained all their epochs
    assert [r["epoch"] for r in second.history_] == [1, 2]
    assert not torch.equal(_weights(first), _weights(second))
    assert second.checkpoint_path_.parent != first.checkpoint_path_.parent
    # the other run's checkpoint was neither loaded nor touched
    assert first.checkpoint_path_.read_bytes() == saved
    # and a refit on the first data resumes the first run (finished: nothing to train)
    again = tiny(**kw).fit(X[:80], y[:80])
    assert calls == [2, 2] and torch.equal(_weights(again), _weights(first))


def test_resume_with_other_training_parameters_trains_again(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    kw = dict(checkpoint_dir=tmp_path, resume=True)
    first = tiny(**kw).fit(X, y)
    with pytest.warns(UserWarning, match="parameters batch_size, lr differ"):
        second = tiny(lr=1e-3, batch_size=16, **kw).fit(X, y)
    with pytest.warns(UserWarning, match="parameter dropout differs"):
        third = tiny(dropout=0.3, **kw).fit(X, y)
    assert calls == [2, 2, 2]
    assert len({r.checkpoint_path_ for r in (first, second, third)}) == 3
    assert not torch.equal(_weights(first), _weights(second))


def test_cross_validate_with_resume_trains_every_fold(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    est = tiny(max_epochs=3, checkpoint_dir=tmp_path, resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "data differ" for the second fold
        res = cross_validate(est, X, y, cv=2, return_estimator=True)
    folds = res["estimator"]
    assert calls == [3, 3]
    assert [reg.n_epochs_ for reg in folds] == [3, 3]
    assert not torch.equal(_weights(folds[0]), _weights(folds[1]))
    assert len(list(tmp_path.glob("*/last.pt"))) == 2
    # run again: every fold resumes (here: loads) its own finished run
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # and finds it, without a warning
        again = cross_validate(est, X, y, cv=2, return_estimator=True)["estimator"]
    assert calls == [3, 3]
    for a, b in zip(folds, again, strict=True):
        assert torch.equal(_weights(a), _weights(b))


def test_grid_search_with_resume_trains_every_candidate(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    est = tiny(checkpoint_dir=tmp_path, resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gs = GridSearchCV(est, {"lr": [1e-3, 1e-2]}, cv=2, refit=False).fit(X, y)
    assert calls == [2] * 4  # 2 candidates x 2 folds, all trained
    assert len(list(tmp_path.glob("*/last.pt"))) == 4
    scores = gs.cv_results_["split0_test_score"]
    assert scores[0] != scores[1]


def test_resume_continues_a_shorter_run(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    kw = dict(checkpoint_dir=tmp_path, resume=True, dropout=0.0)
    short = tiny(max_epochs=2, **kw).fit(X, y)
    longer = tiny(max_epochs=4, **kw).fit(X, y)
    assert calls == [2, 2]  # the second fit trained only the two missing epochs
    assert [r["epoch"] for r in longer.history_] == [1, 2, 3, 4]
    assert longer.checkpoint_path_ == short.checkpoint_path_
    assert longer.history_[1]["train_loss"] == short.history_[1]["train_loss"]


def test_resume_with_max_epochs_below_the_checkpoint_is_an_error(data, tmp_path):
    X, y, _ = data
    reg = tiny(max_epochs=3, checkpoint_dir=tmp_path).fit(X, y)
    saved = reg.checkpoint_path_.read_bytes()
    with pytest.raises(ValueError, match=r"already trained 3 epochs.*max_epochs=2"):
        tiny(max_epochs=2, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    assert reg.checkpoint_path_.read_bytes() == saved  # left as it was
    # the same number of epochs: the finished run is loaded, nothing is trained
    done = tiny(max_epochs=3, checkpoint_dir=tmp_path, resume=True).fit(X, y)
    assert torch.equal(_weights(done), _weights(reg))


def test_legacy_flat_checkpoint_is_ignored_with_a_warning(data, tmp_path, monkeypatch):
    X, y, _ = data
    calls = _count_training(monkeypatch)
    old = tiny(checkpoint_dir=tmp_path).fit(X, y)
    # what an older specreg wrote: checkpoint_dir/last.pt with an architecture fingerprint
    legacy = tmp_path / "last.pt"
    state = torch.load(old.checkpoint_path_, weights_only=False)
    state["fingerprint"] = {"patch_size": 16, "hidden_size": 16, "n_pix": 64}
    torch.save(state, legacy)
    saved = legacy.read_bytes()
    for path in old.checkpoint_path_.parent.iterdir():
        path.unlink()
    old.checkpoint_path_.parent.rmdir()
    with pytest.warns(UserWarning, match=re.escape(f"{legacy} is ignored")):
        reg = tiny(checkpoint_dir=tmp_path, resume=True).fit(X, y)
    assert calls == [2, 2] and reg.n_epochs_ == 2
    assert legacy.read_bytes() == saved


def test_resume_refuses_a_checkpoint_with_another_fingerprint(data, tmp_path):
    X, y, _ = data
    a = tiny(checkpoint_dir=tmp_path).fit(X[:80], y[:80])
    b = tiny(checkpoint_dir=tmp_path).fit(X[80:], y[80:])
    # a run folder copied over another by hand: never loaded, never overwritten
    b.checkpoint_path_.write_bytes(a.checkpoint_path_.read_bytes())
    with pytest.raises(ValueError, match="data differ.*refusing to resume"):
        tiny(checkpoint_dir=tmp_path, resume=True).fit(X[80:], y[80:])


def test_fingerprint_covers_training_parameters_and_data(data):
    X, y, _ = data
    from specreg.spectra import PFSNoiseModel, pfs_mr_wave

    def fingerprint(X=X, y=y, **kw):
        return tiny(**kw)._fingerprint(X, y, seed=0)

    base = fingerprint()
    changed = dict(
        lr=1e-3,
        min_lr=0.0,
        weight_decay=0.1,
        warmup_epochs=1,
        batch_size=16,
        loss="l1",
        noise_level=0.5,
        noise_model=PFSNoiseModel(pfs_mr_wave(64)),
        validation_fraction=0.2,
        random_state=1,
        amp="bf16",
        grad_clip=None,
        dropout=0.2,
        early_stopping=True,
        patience=3,
        hidden_size=32,
        pos_encoding="wavelength",
        wave=np.linspace(5000.0, 5500.0, 64),
    )
    for name, value in changed.items():
        assert vit_impl._differences(fingerprint(**{name: value}), base) == [
            f"parameter {name} differs"
        ], name
    # not training parameters: resuming to a larger max_epochs is what resume is for
    same = dict(max_epochs=50, verbose=1, progress_bar=True, device="auto", compile=True)
    assert fingerprint(**same, checkpoint_dir="elsewhere", resume=True) == base
    # numpy scalars (as from a parameter grid) describe like Python numbers
    assert fingerprint(lr=np.float64(3e-3), batch_size=np.int64(32)) == base
    assert fingerprint(wave=np.linspace(5000.0, 5500.0, 64)) == fingerprint(
        wave=list(np.linspace(5000.0, 5500.0, 64))
    )
    # a noise model is described by its settings, the same in any process
    noise = [PFSNoiseModel(pfs_mr_wave(64)) for _ in range(2)]
    assert fingerprint(noise_model=noise[0]) == fingerprint(noise_model=noise[1])
    other = PFSNoiseModel(pfs_mr_wave(64), sky_lines=False)
    assert fingerprint(noise_model=other) != fingerprint(noise_model=noise[0])
    # data: values, rows, shape and dtype
    assert vit_impl._differences(fingerprint(X=X[::-1].copy()), base) == ["data differ"]
    assert fingerprint(y=y[:, None]) != base and fingerprint(y=y + 1) != base
    assert fingerprint(X=np.asfortranarray(X)) == base  # the memory layout does not matter
    # random_state None is resumable (the same fingerprint); a RandomState by its draw
    assert fingerprint(random_state=None) == fingerprint(random_state=None)
    rs = fingerprint(random_state=np.random.RandomState(0))
    assert rs["params"]["random_state"] == "drawn seed 0"


def test_array_digest_of_large_arrays_samples_every_row(monkeypatch):
    monkeypatch.setattr(vit_impl, "_FULL_HASH_BYTES", 4096)
    monkeypatch.setattr(vit_impl, "_SAMPLE_BYTES", 1024)
    A = np.random.default_rng(0).random((400, 64), dtype=np.float32)  # 100 kB
    d = vit_impl._array_digest(A)
    assert d["hash"] == "sampled" and d["shape"] == [400, 64] and d["dtype"] == "<f4"
    # layout-independent: C, F and strided views of the same values agree
    assert vit_impl._array_digest(np.asfortranarray(A)) == d
    wide = np.zeros((400, 128), np.float32)
    wide[:, ::2] = A
    assert vit_impl._array_digest(wide[:, ::2]) == d
    # every row is sampled: a changed row, swapped rows or a subset all differ
    for i in range(0, 400, 37):
        B = A.copy()
        B[i] += 1.0
        assert vit_impl._array_digest(B) != d, i
    B = A.copy()
    B[[10, 11]] = B[[11, 10]]
    assert vit_impl._array_digest(B) != d
    assert vit_impl._array_digest(A[1:]) != d


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    from specreg.estimators import SpecViTRegressor
    X = np.load(sys.argv[1]); y = np.load(sys.argv[2])
    reg = SpecViTRegressor(patch_size=16, hidden_size=16, depth=1, heads=2, max_epochs=40,
                           batch_size=32, device="cpu", random_state=0,
                           checkpoint_dir=sys.argv[3], resume=True, verbose=1)
    reg.fit(X, y)
    print("EPOCHS", reg.n_epochs_, flush=True)
    """
)


@pytest.mark.slow
def test_resume_after_sigkill(data, tmp_path):
    X, y, _ = data
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT)
    ckpt = tmp_path / "ckpt"
    args = [sys.executable, str(script), str(tmp_path / "X.npy"), str(tmp_path / "y.npy")]
    args.append(str(ckpt))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(ckpt.glob("*/last.pt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (last,) = ckpt.glob("*/last.pt")
    done = len(torch.load(last, weights_only=False)["history"])
    assert 1 <= done < 40
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert "EPOCHS 40" in out.stdout
    # the resumed run starts right after the last checkpointed epoch
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)  # skorch colours its table
    first_logged = [int(m) for m in re.findall(r"^\s*(\d+)\s+\d", plain, flags=re.M)]
    assert first_logged[0] == done + 1


# --------------------------------------------------------------------------------------
# scale-out
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_cpu_processes_gives_same_kind_of_model():
    from specreg.estimators import fit_distributed

    flux, _, labels = make_synthetic_spectra(1500, n_pix=256, seed=0)
    X_train, y_train = flux[:1200], labels[:1200, 1]
    kw = dict(
        patch_size=16,
        hidden_size=32,
        depth=2,
        heads=4,
        max_epochs=8,
        batch_size=64,
        lr=2e-3,
        dropout=0.0,
        noise_level=0,
        device="cpu",
        random_state=0,
    )
    single = SpecViTRegressor(**kw).fit(X_train, y_train)
    ddp, replicas = fit_distributed(
        SpecViTRegressor(**kw), X_train, y_train, n_procs=2, return_replicas=True
    )
    np.testing.assert_array_equal(replicas[0], replicas[1])  # replicas stayed in sync
    r2_single = r2_score(labels[1200:, 1], single.predict(flux[1200:]))
    r2_ddp = r2_score(labels[1200:, 1], ddp.predict(flux[1200:]))
    print(f"R2 single={r2_single:.4f} ddp={r2_ddp:.4f}")
    assert r2_ddp >= 0.9 and abs(r2_ddp - r2_single) < 0.05
    assert ddp.n_epochs_ == single.n_epochs_ == 8
    # the DDP-trained model is a plain, picklable single-process model
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ddp)).predict(flux), ddp.predict(flux))


def test_distributed_without_process_group_is_a_clear_error(data, monkeypatch):
    X, y, _ = data
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        tiny(distributed=True).fit(X, y)


# --------------------------------------------------------------------------------------
# bad input, each named in the message
# --------------------------------------------------------------------------------------
def test_bad_input_width_differs_at_predict(data):
    X, y, _ = data
    reg = tiny().fit(X, y)
    with pytest.raises(ValueError, match="X has 126 features.*expecting 128 features"):
        reg.predict(X[:, :-2])


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_bad_input_nan_inf(data, bad, word):
    X, y, _ = data
    X_bad = X.copy()
    X_bad[3, 5] = bad
    with pytest.raises(ValueError, match=word):
        tiny().fit(X_bad, y)
    reg = tiny().fit(X, y)
    with pytest.raises(ValueError, match=word):
        reg.predict(X_bad)


def test_bad_input_odd_width_with_noise(data):
    X, y, _ = data
    with pytest.raises(ValueError, match=r"noise_level.*even.*127 feature\(s\) \(odd width\)"):
        tiny(noise_level=1.0).fit(X[:, :-1], y)


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")
def test_bad_input_cuda_without_gpu(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="device='cuda'.*CUDA is not available"):
        tiny(device="cuda").fit(X, y)


def test_bad_parameters_are_named(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="loss"):
        tiny(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="amp"):
        tiny(amp="fp8").fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        tiny(validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="divisible"):
        tiny(hidden_size=16, heads=3).fit(X, y)
    if not CUDA:
        with pytest.raises(ValueError, match="fp16.*CUDA"):
            tiny(amp="fp16").fit(X, y)


# --------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_cuda_training_amp(data, amp):
    X, y, _ = data
    reg = tiny(device="cuda", amp=amp, max_epochs=3).fit(X, y)
    assert reg.device_.type == "cuda"
    pred = reg.predict(X)
    assert np.isfinite(pred).all() and pred.shape == y.shape
    # a CUDA-trained model pickles and predicts the same
    np.testing.assert_allclose(pickle.loads(pickle.dumps(reg)).predict(X), pred, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_noise_drawn_on_device(data, monkeypatch):
    X, y, _ = data
    devices = []
    real = torch.randn_like

    def spy(t, *a, **k):
        devices.append(t.device.type)
        return real(t, *a, **k)

    monkeypatch.setattr(torch, "randn_like", spy)
    tiny(device="cuda", max_epochs=1).fit(X, y)
    assert devices and set(devices) == {"cuda"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0"),
        ({"min_lr": -1e-5}, "min_lr must be a finite number >= 0"),
        ({"min_lr": 1.0, "lr": 1e-3}, "min_lr=1.0 must be <= lr"),
        ({"noise_level": np.inf}, "noise_level must be finite"),
        ({"mlp_ratio": 0}, "mlp_ratio must be a finite number > 0"),
        ({"lr": np.nan}, "lr must be a finite number > 0"),
        ({"dropout": 1.5}, "dropout must be a finite number >= 0.0 and <= 1.0"),
        ({"random_state": -1}, "random_state must be None, an int"),
    ],
)
def test_numeric_options_are_checked_and_named(data, kw, match):
    X, y, _ = data
    with pytest.raises(ValueError, match=re.escape(match)):
        tiny(**kw).fit(X, y)


# --------------------------------------------------------------------------------------
# Gaussian uncertainty head
# --------------------------------------------------------------------------------------
def heteroscedastic(n, n_pix=16, seed=0):
    """``y = x0 + sigma * N(0, 1)`` with the noise std ``sigma`` set by pixel 1 (0.05-0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, n_pix)).astype(np.float32)
    sigma = 0.05 + 0.45 * (X[:, 1] + 1) / 2
    y = X[:, 0] + sigma * rng.standard_normal(n)
    return X, y.astype(np.float32), sigma


def gaussian_tiny(**kw):
    return tiny(uncertainty="gaussian", **kw)


@pytest.mark.parametrize("multi", [False, True], ids=["1d_y", "2d_y"])
def test_return_std_shapes_positive_and_mean_is_predict(data, multi):
    X, y, labels = data
    target = labels if multi else y
    reg = gaussian_tiny().fit(X, target)
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == std.shape == target.shape
    assert mean.dtype == std.dtype == np.float64
    assert np.isfinite(std).all() and (std > 0).all()
    np.testing.assert_array_equal(mean, reg.predict(X))
    # in label units: the std scales with the labels (T_eff ~ 1e3 K, log g ~ 1 dex)
    if multi:
        assert np.median(std[:, 0]) > 10 * np.median(std[:, 1])


def test_return_std_is_one_forward_pass(data, monkeypatch):
    X, y, _ = data
    reg = gaussian_tiny().fit(X, y)
    calls = []
    real = reg.net_.module_.forward
    monkeypatch.setattr(reg.net_.module_, "forward", lambda *a: calls.append(1) or real(*a))
    reg.predict(X)
    plain = len(calls)
    reg.predict(X, return_std=True)
    assert len(calls) == 2 * plain  # return_std costs no extra forward pass


def test_return_std_needs_a_gaussian_head(data):
    X, y, _ = data
    reg = tiny().fit(X, y)
    with pytest.raises(ValueError, match="fit with uncertainty='gaussian'"):
        reg.predict(X, return_std=True)
    for method in (lambda: reg.predict_quantiles(X), lambda: reg.predict_cdf(X, y)):
        with pytest.raises(ValueError, match="fitted with uncertainty=None"):
            method()
    # the fitted head decides, not a parameter changed after fit
    reg.set_params(uncertainty="gaussian")
    with pytest.raises(ValueError, match="fitted with uncertainty=None"):
        reg.predict(X, return_std=True)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        gaussian_tiny().predict(X, return_std=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        (
            {"uncertainty": "ensemble"},
            "uncertainty must be None, 'gaussian' or 'truncated'; got 'ensemble'",
        ),
        ({"uncertainty": True}, "uncertainty must be None, 'gaussian' or 'truncated'; got True"),
        ({"uncertainty": "gaussian", "nll_beta": 1.5}, "nll_beta must be a finite number >= 0"),
        ({"uncertainty": "gaussian", "nll_beta": -0.1}, "nll_beta must be a finite number >= 0"),
        ({"nll_beta": np.nan}, "nll_beta must be a finite number"),
        ({"uncertainty": "gaussian", "loss": "l1"}, "loss='l1' cannot be combined with"),
        (
            {"uncertainty": "gaussian", "variance_head": "frozen"},
            "variance_head must be 'detached' or 'joint'; got 'frozen'",
        ),
    ],
)
def test_bad_uncertainty_options_are_named(data, kw, match):
    X, y, _ = data
    with pytest.raises(ValueError, match=re.escape(match)):
        tiny(**kw).fit(X, y)


def fit_heteroscedastic(X, y, **kw):
    """A small Gaussian-head ViT fitted to :func:`heteroscedastic` data (flux only)."""
    params = dict(
        patch_size=4,
        hidden_size=16,
        depth=1,
        heads=2,
        max_epochs=15,
        batch_size=64,
        lr=3e-3,
        dropout=0.0,
        noise_level=0,
        uncertainty="gaussian",
        device="cpu",
        random_state=0,
    )
    return SpecViTRegressor(**{**params, **kw}).fit(X, y)


def test_gaussian_head_learns_heteroscedastic_noise():
    X, y, sigma = heteroscedastic(4000)
    X_test, y_test, sigma_test = heteroscedastic(1000, seed=1)
    reg = fit_heteroscedastic(X, y)
    mean, std = reg.predict(X_test, return_std=True)
    z = (y_test - mean) / std
    # the predicted std follows the true noise std (0.05 to 0.5 over the set; ~0.99 seen)
    assert np.corrcoef(std, sigma_test)[0, 1] > 0.8
    low, high = (
        sigma_test < np.quantile(sigma_test, 0.25),
        sigma_test > np.quantile(sigma_test, 0.75),
    )
    assert np.median(std[high]) > 2.5 * np.median(std[low])
    # and is calibrated: ~68 % of the residuals within 1 sigma (0.69 seen), z std ~1
    assert 0.55 < np.mean(np.abs(z) <= 1) < 0.82
    assert 0.8 < np.std(z) < 1.25


@pytest.mark.parametrize("head", ["gaussian", "truncated"])
def test_detached_variance_head_trains_the_network_as_mse_does(data, head):
    """The encoder and mean train exactly as with MSE (same draws, dropout, clipping);
    only the variance layer learns from the NLL."""
    X, y, _ = data
    mse = tiny(max_epochs=3).fit(X, y)
    reg = tiny(max_epochs=3, uncertainty=head, variance_head="detached").fit(X, y)
    net, ref = reg.net_.module_.state_dict(), mse.net_.module_.state_dict()
    assert {k for k in net if k not in ref} == {"variance_head.weight", "variance_head.bias"}
    for name, value in ref.items():
        assert torch.equal(net[name], value), name
    mean, std = reg.predict(X, return_std=True)
    if head == "gaussian":
        np.testing.assert_array_equal(mean, mse.predict(X))
    else:  # the predictive mean is MSE's, clipped into the training labels' range
        low, high = reg.label_range_[:, 0]
        inner = (high - low) * 1e-3
        np.testing.assert_allclose(
            mean, np.clip(mse.predict(X), low + inner, high - inner), rtol=1e-6
        )
        assert (mean > low).all() and (mean < high).all()
        np.testing.assert_allclose(reg.predict(X), mean)
        # the quantiles and the CDF are those of the distribution with that mean
        np.testing.assert_allclose(reg.predict_cdf(X, reg.predict_quantiles(X, [0.3])[:, 0]), 0.3)
    # the variance layer moved away from its start (zero weights, unit variance)
    assert reg.net_.module_.variance_head.weight.abs().sum() > 0
    assert np.isfinite(std).all() and (std > 0).all() and np.ptp(std) > 0


def test_detached_variance_head_learns_a_noise_the_mean_ignores():
    """The detached variance is refitted to convergence on the trained features: they
    carry the pixel that sets the label noise although the mean does not use it, so the
    std follows that noise and is calibrated."""
    X, y, sigma = heteroscedastic(4000)
    X_test, y_test, sigma_test = heteroscedastic(1000, seed=1)
    reg = fit_heteroscedastic(X, y, variance_head="detached")
    mean, std = reg.predict(X_test, return_std=True)
    z = (y_test - mean) / std
    fit = reg.variance_fit_
    assert fit["n_spectra"] == 4000 and fit["nll_after"] < fit["nll_before"]
    # seen: correlation 0.97 (0.0 with the layer as SGD left it), coverage 0.68
    assert np.corrcoef(std, sigma_test)[0, 1] > 0.8
    assert 0.6 < np.mean(np.abs(z) <= 1) < 0.76
    assert 0.85 < np.std(z) < 1.2


@pytest.mark.slow
def test_gaussian_head_calibrated_per_label_for_two_outputs():
    # two labels with noise driven by different pixels: each std must follow its own
    X, y0, sigma0 = heteroscedastic(8000)
    rng = np.random.default_rng(5)
    sigma1 = 0.05 + 0.45 * (X[:, 2] + 1) / 2
    y = np.stack([y0, X[:, 3] + sigma1 * rng.standard_normal(len(X))], axis=1)
    reg = SpecViTRegressor(
        patch_size=4,
        hidden_size=32,
        depth=2,
        heads=2,
        max_epochs=20,
        batch_size=64,
        lr=3e-3,
        dropout=0.0,
        noise_level=0,
        uncertainty="gaussian",
        device="cpu",
        random_state=0,
    ).fit(X[:6000], y[:6000])
    mean, std = reg.predict(X[6000:], return_std=True)
    for k, sigma in enumerate((sigma0[6000:], sigma1[6000:])):
        z = (y[6000:, k] - mean[:, k]) / std[:, k]
        assert np.corrcoef(std[:, k], sigma)[0, 1] > 0.9, k
        assert 0.6 < np.mean(np.abs(z) <= 1) < 0.76, k
        assert 0.9 < np.std(z) < 1.1, k


def test_gaussian_pickle_round_trip_keeps_the_std(data, tmp_path):
    X, _, labels = data
    reg = gaussian_tiny().fit(X, labels)
    mean, std = reg.predict(X, return_std=True)
    for loaded in (pickle.loads(pickle.dumps(reg)), None):
        if loaded is None:
            joblib.dump(reg, tmp_path / "vit.joblib")
            loaded = joblib.load(tmp_path / "vit.joblib")
        mean2, std2 = loaded.predict(X, return_std=True)
        np.testing.assert_array_equal(mean2, mean)
        np.testing.assert_array_equal(std2, std)


def test_gaussian_fit_is_reproducible_and_trains_the_beta_nll(data, monkeypatch):
    X, y, _ = data
    a = gaussian_tiny().fit(X, y)
    b = gaussian_tiny().fit(X, y)
    np.testing.assert_array_equal(a.predict(X, return_std=True), b.predict(X, return_std=True))
    assert isinstance(a.net_.criterion_, vit_impl.DetachedVarianceLoss)  # the default head
    joint = gaussian_tiny(variance_head="joint").fit(X, y)
    assert isinstance(joint.net_.criterion_, vit_impl.BetaNLLLoss)
    assert joint.net_.criterion_.beta == 1.0  # the default
    assert gaussian_tiny(variance_head="joint", nll_beta=0.5).fit(X, y).net_.criterion_.beta == 0.5
    # nll_beta changes the joint head's training
    c = gaussian_tiny(variance_head="joint", nll_beta=0.0).fit(X, y)
    assert not np.array_equal(c.predict(X), joint.predict(X))


def test_gaussian_resume_and_checkpoint(data, tmp_path, monkeypatch):
    X, y, _ = data
    params = dict(checkpoint_dir=tmp_path, resume=True, validation_fraction=0.25)
    first = gaussian_tiny(**params).fit(X, y)
    assert (first.checkpoint_path_.parent / "best.pt").exists()
    # the finished run is loaded, not trained again, and predicts the same mean and std
    calls = _count_training(monkeypatch)
    again = gaussian_tiny(**params).fit(X, y)
    assert calls == [] and again.checkpoint_path_ == first.checkpoint_path_
    np.testing.assert_array_equal(
        again.predict(X, return_std=True), first.predict(X, return_std=True)
    )
    # a run without the head has its own folder (the head is a training parameter)
    with pytest.warns(
        UserWarning, match="parameters nll_beta, uncertainty, variance_head, variance_layer differ"
    ):
        plain = tiny(**params).fit(X, y)
    assert plain.checkpoint_path_ != first.checkpoint_path_


def test_truncated_head_stays_in_the_label_box(data):
    X, y, labels = data
    reg = tiny(uncertainty="truncated").fit(X, labels)
    low, high = labels.min(axis=0), labels.max(axis=0)
    np.testing.assert_allclose(reg.label_range_, np.stack([low, high]), rtol=1e-6)
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == std.shape == labels.shape and (std > 0).all()
    assert (mean >= low - 1e-3).all() and (mean <= high + 1e-3).all()
    q = reg.predict_quantiles(X, [0.025, 0.5, 0.975])
    assert q.shape == (len(X), 3, labels.shape[1])
    assert (np.diff(q, axis=1) > 0).all()
    assert (q >= low - 1e-3).all() and (q <= high + 1e-3).all()
    pit = reg.predict_cdf(X, labels)
    assert pit.shape == labels.shape and ((pit >= 0) & (pit <= 1)).all()
    # the median's CDF is one half
    np.testing.assert_allclose(reg.predict_cdf(X, q[:, 1]), 0.5, atol=1e-6)


def test_gaussian_head_quantiles_and_cdf_are_those_of_its_mean_and_std(data):
    from scipy import stats

    X, y, _ = data
    reg = gaussian_tiny().fit(X, y)
    mean, std = reg.predict(X, return_std=True)
    q = reg.predict_quantiles(X, [0.1, 0.9])
    np.testing.assert_allclose(q[:, 1], mean + stats.norm.ppf(0.9) * std, rtol=1e-5)
    np.testing.assert_allclose(reg.predict_cdf(X, mean + std), stats.norm.cdf(1.0), atol=1e-5)
    with pytest.raises(ValueError, match=r"quantiles must be levels in \(0, 1\)"):
        reg.predict_quantiles(X, [0.5, 1.0])
    with pytest.raises(ValueError, match="y must be shaped like predict"):
        reg.predict_cdf(X, y[:-1])


def test_truncated_loss_is_the_flat_prior_for_a_wide_gaussian():
    import torch

    from specreg.estimators._vit_module import TruncatedBetaNLLLoss

    loss = TruncatedBetaNLLLoss(0.0, low=[-1.0], high=[3.0])
    raw_var = torch.full((5, 1), 1e8)  # softplus(raw) = raw for large raw
    y_pred = torch.cat([torch.zeros(5, 1), raw_var], dim=1)
    y = torch.linspace(-1, 3, 5)[:, None]
    # -log of the uniform density on [-1, 3] is log 4; the loss drops log sqrt(2 pi)
    expected = np.log(4.0) - 0.5 * np.log(2 * np.pi)
    assert float(loss(y_pred, y)) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="low < high"):
        TruncatedBetaNLLLoss(1.0, low=[1.0], high=[1.0])


@pytest.mark.parametrize("variance_head", ["joint", "detached"])
def test_truncated_head_matches_the_exact_posterior_where_the_spectrum_says_little(
    variance_head,
):
    # labels uniform on [0, 1] seen through one pixel with noise 0.3: the posterior is
    # exactly N(pixel, 0.3**2) truncated to [0, 1], near the flat box for the labels
    # next to the edges. (With no information at all the loss is flat to O(sigma^-4)
    # along the widening that would make the box, so that case tests the optimiser.)
    from scipy import stats

    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, 4096).astype(np.float32)
    X = rng.standard_normal((4096, 16)).astype(np.float32)
    X[:, 0] = y + 0.3 * rng.standard_normal(4096)
    reg = tiny(
        uncertainty="truncated",
        variance_head=variance_head,
        max_epochs=30,
        noise_level=0,
        batch_size=128,
    ).fit(X[:2048], y[:2048])
    X_test, y_test = X[2048:], y[2048:]
    pixel = X_test[:, 0].astype(float)
    exact_std = stats.truncnorm.std(-pixel / 0.3, (1 - pixel) / 0.3, pixel, 0.3)
    _, std = reg.predict(X_test, return_std=True)
    # seen: median ratio 1.03 (joint), 1.00 (detached)
    assert 0.9 < np.median(std / exact_std) < 1.15
    levels = [0.025, 0.15865525393145707, 0.8413447460685429, 0.975]
    q = reg.predict_quantiles(X_test, levels)
    # seen: 0.690 / 0.950 (joint), 0.671 / 0.940 (detached); sd 0.010 / 0.005 (the
    # detached head with its location at the MSE mean, before it matched it: 0.639 / 0.929)
    assert 0.65 < np.mean((y_test >= q[:, 1]) & (y_test <= q[:, 2])) < 0.72
    assert 0.93 < np.mean((y_test >= q[:, 0]) & (y_test <= q[:, 3])) < 0.97


def test_fingerprint_has_uncertainty_only_when_set(data):
    X, y, _ = data

    def fingerprint(**kw):
        return tiny(**kw)._fingerprint(X, y, seed=0)

    base = fingerprint()
    # runs without the head keep the fingerprint (and run folder) they had before the
    # option existed, and nll_beta without the head changes nothing
    assert "uncertainty" not in base["params"] and "nll_beta" not in base["params"]
    assert fingerprint(nll_beta=1.0) == base
    gauss = fingerprint(uncertainty="gaussian")
    assert gauss["params"]["uncertainty"] == "gaussian" and gauss["params"]["nll_beta"] == 1.0
    assert vit_impl._differences(fingerprint(uncertainty="gaussian", nll_beta=0.5), gauss) == [
        "parameter nll_beta differs"
    ]
    # the joint head keeps the fingerprint it had before variance_head existed, and
    # without an uncertainty head the option changes nothing
    joint = fingerprint(uncertainty="gaussian", variance_head="joint")
    assert "variance_head" not in joint["params"] and "variance_layer" not in joint["params"]
    assert fingerprint(variance_head="joint") == base == fingerprint(variance_head="detached")
    # the detached head (the default) names its layer, so that run folders of the layer
    # before it read the noise level are not resumed
    assert gauss["params"]["variance_head"] == "detached"
    assert gauss["params"]["variance_layer"] == "pooled features and log noise level"


def test_run_folder_digest_is_stable():
    # the run folder of unchanged settings and data must not move between versions, or
    # resume=True would silently train afresh; a change of the fingerprint on purpose
    # bumps _FINGERPRINT_VERSION and updates this digest
    rng = np.random.default_rng(0)
    flux = (1 + 0.1 * rng.standard_normal((96, 32))).astype(np.float32)
    X = np.hstack([flux, np.full_like(flux, 0.05)])
    y = flux[:, :4].mean(axis=1)
    reg = SpecViTRegressor(random_state=0)
    assert reg._digest(reg._fingerprint(X, y, seed=0)) == "cd690446350c"
