import numpy as np
import pytest

from specreg.spectra import REFERENCE_SNR_TABLE, PFSNoiseModel, pfs_mr_wave, snr_median

from ..conftest import line_model


@pytest.fixture(scope="module")
def typical_flux():
    """A solar-metallicity K dwarf of the toy line model, median 0.5."""
    f = line_model(np.array([[5000.0, 4.5, 0.0]]), pfs_mr_wave())[0]
    return 0.5 * f / np.median(f)


def test_snr_matches_reference_table_within_5_percent(typical_flux):
    noise = PFSNoiseModel()
    for mag, target in REFERENCE_SNR_TABLE:
        snr = snr_median(typical_flux[None], noise.error(typical_flux, mag))[0]
        assert abs(snr / target - 1) < 0.05, (mag, snr, target)


def test_errors_finite_positive_and_fainter_is_noisier(typical_flux):
    noise = PFSNoiseModel()
    e1, e2 = noise.error(typical_flux, 20.0), noise.error(typical_flux, 22.0)
    assert np.all(np.isfinite(e1)) and np.all(e1 > 0)
    assert np.all(e2 > e1)
    assert e1.dtype == np.float32


def test_error_structure_red_rise_and_sky_spikes():
    noise = PFSNoiseModel()
    err = noise.error(np.full(4096, 0.5), 21.5)[0]
    assert err[-200:].mean() > 1.1 * err[200:400].mean()  # red end noisier
    ratio = err / np.median(err)
    n_spiky = int((ratio > 1.3).sum())
    assert 150 < n_spiky < 800  # reference: ~410 strongly elevated pixels
    flat = PFSNoiseModel(sky_lines=False).error(np.full(4096, 0.5), 21.5)[0]
    assert (flat / np.median(flat)).max() < 1.6


def test_zero_flux_still_positive_error():
    err = PFSNoiseModel().error(np.zeros(4096), 21.5)
    assert np.all(err > 0)


def test_condition_scatter_is_seeded_and_spreads_snr(typical_flux):
    flux = np.repeat(typical_flux[None], 400, axis=0)
    fixed = PFSNoiseModel().error(flux, 21.5)
    assert np.ptp(snr_median(flux, fixed)) < 1e-3
    model = PFSNoiseModel(condition_scatter=0.3, throughput_scale=1.15)
    a = model.error(flux, 21.5, random_state=3)
    b = model.error(flux, 21.5, random_state=3)
    np.testing.assert_array_equal(a, b)
    snr = snr_median(flux, a)
    assert 0.2 < np.std(np.log(snr)) < 0.4


def test_calibrate_to_custom_table(typical_flux):
    model = PFSNoiseModel().calibrate(typical_flux, [(20.0, 30.0), (22.0, 5.0)])
    for mag, target in [(20.0, 30.0), (22.0, 5.0)]:
        snr = snr_median(typical_flux[None], model.error(typical_flux, mag))[0]
        assert abs(snr / target - 1) < 0.02


@pytest.mark.parametrize("mag", [np.nan, np.inf])
def test_nonfinite_mag_raises(mag):
    with pytest.raises(ValueError, match="mag"):
        PFSNoiseModel().error(np.full(4096, 0.5), mag)


def test_wrong_pixel_count_raises():
    with pytest.raises(ValueError, match="4096 pixels"):
        PFSNoiseModel().error(np.full(100, 0.5), 21.0)


def test_input_flux_not_modified():
    flux = np.full((2, 4096), 0.5)
    flux[0, 0] = -1.0
    before = flux.copy()
    PFSNoiseModel().error(flux, 21.0)
    np.testing.assert_array_equal(flux, before)


def test_snr_median_rejects_nonpositive_error():
    with pytest.raises(ValueError, match="> 0"):
        snr_median([[1.0]], [[0.0]])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"obj_coeff": np.nan}, "obj_coeff must be a finite number >= 0"),
        ({"bkg_coeff": np.inf}, "bkg_coeff must be a finite number > 0"),
        ({"obj_coeff": "1"}, "obj_coeff must be a finite number"),
        ({"condition_scatter": True}, "condition_scatter must be a finite number"),
        ({"sky_lines": "no"}, "sky_lines must be True or False"),
        ({"wave": [3.0, 2.0, 1.0]}, "strictly increasing"),
        ({"wave": [[7100.0, 7200.0]]}, "wave must be a 1-D grid"),
        ({"wave": []}, "wave must be a 1-D grid"),
    ],
)
def test_noise_model_options_are_checked(kw, match):
    # obj_coeff=nan used to give 4096 NaN errors; a decreasing wave was accepted
    with pytest.raises(ValueError, match=match):
        PFSNoiseModel(**kw)


def test_collected_flux_honours_n():
    noise = PFSNoiseModel()
    assert noise.collected_flux(21.5, n=3).shape == (3,)
    with pytest.raises(ValueError, match="mag has 2 values for n=3"):
        noise.collected_flux([21.0, 22.0], n=3)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        noise.collected_flux(21.5, n=2.5)


@pytest.mark.parametrize("kw", [{"lo": np.nan}, {"hi": np.inf}, {"lo": 9000.0}, {"n_pix": 2.5}])
def test_pfs_mr_wave_refuses_a_grid_that_is_not_one(kw):
    with pytest.raises(ValueError, match="must be"):
        pfs_mr_wave(**kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"reference_flux": np.nan}, "reference_flux must be a finite number > 0"),
        ({"reference_flux": 0.0}, "reference_flux must be a finite number > 0"),
        ({"rtol": np.nan}, "rtol must be a finite number > 0"),
        ({"rtol": np.inf}, "rtol must be a finite number > 0"),
    ],
)
def test_collected_flux_from_error_checks_its_options(kw, match):
    # reference_flux=nan used to give NaN, rtol=inf switched the consistency check off
    noise = PFSNoiseModel()
    with pytest.raises(ValueError, match=match):
        noise.collected_flux_from_error(noise.reference_error([1.0]), **kw)


@pytest.mark.parametrize(
    "flux, error, match",
    [
        ([[np.nan, 1.0]], [[1.0, 1.0]], "flux contains 1 NaN"),
        ([[1.0, 1.0]], [[np.inf, 1.0]], "error contains 1 NaN or infinite"),
        (np.ones((2, 0)), np.ones((2, 0)), "n_pix >= 1"),
    ],
)
def test_snr_median_refuses_what_has_no_median(flux, error, match):
    with pytest.raises(ValueError, match=match):
        snr_median(flux, error)


@pytest.mark.parametrize(
    "table, match",
    [
        ([], "two or more"),
        ([(21.0, 5.0)], "two or more"),
        ([(21.0, 5.0, 1.0), (22.0, 3.0, 1.0)], "two or more"),
        ([(21.0, np.nan), (22.0, 3.0)], "table contains 1 NaN"),
        ([(21.0, -5.0), (22.0, 3.0)], "SNR values must be > 0"),
    ],
)
def test_calibrate_refuses_a_table_it_cannot_fit(typical_flux, table, match):
    # an empty table used to return the default constants without a word
    with pytest.raises(ValueError, match=match):
        PFSNoiseModel().calibrate(typical_flux, table)
    with pytest.raises(ValueError, match="one spectrum of 4096 pixels"):
        PFSNoiseModel().calibrate(np.full(10, 0.5))
