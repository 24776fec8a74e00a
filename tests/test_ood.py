"""Out-of-distribution unlabeled data: held-out classes or noise at a chosen fraction of a fixed-size set, and the
run configuration's path to it."""
import numpy as np
import pytest
from conftest import config_of

from influence_ssl.data import ImageDataset, SplitSizeError, load_image_dataset, ood_ssl_data
from influence_ssl.runs import build
from influence_ssl.trainer import ConfigError


def toy_dataset(per_class=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    # Each image carries its class in pixel (0, 0), so the tests can tell where an image came from.
    x = rng.integers(0, 256, size=(len(y), 4, 4, 1), dtype=np.uint8)
    x[:, 0, 0, 0] = y * 10
    test_y = np.repeat(np.arange(10), 5)
    test_x = np.zeros((len(test_y), 4, 4, 1), np.uint8)
    test_x[:, 0, 0, 0] = test_y * 10
    return ImageDataset("toy", 10, x, y, test_x, test_y, {})


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.75])
def test_held_out_classes_fill_the_chosen_fraction_of_a_fixed_size_unlabeled_set(fraction):
    dataset = toy_dataset()
    data = ood_ssl_data(dataset, 12, 18, seed=3, ood_classes=[6, 7, 8, 9], ood_fraction=fraction)
    reference = ood_ssl_data(dataset, 12, 18, seed=3, ood_classes=[6, 7, 8, 9], ood_fraction=0.0)
    # One size at every fraction, capped where the 160 held-out images cannot fill the fraction.
    pool = 4 * 40
    size = len(reference.unlabeled_ids)
    expected = size if fraction == 0 else min(size, int(pool / fraction))
    assert len(data.unlabeled_ids) == expected
    assert data.unlabeled_ood.mean() == pytest.approx(fraction, abs=1 / len(data.unlabeled_ids))
    source_class = data.unlabeled_x[:, 0, 0, 0] // 10
    assert np.all((source_class >= 6) == data.unlabeled_ood)  # OOD rows are exactly the held-out images
    assert np.all(data.unlabeled_true_y[data.unlabeled_ood] == -1)
    assert np.array_equal(data.unlabeled_true_y[~data.unlabeled_ood], source_class[~data.unlabeled_ood])
    for x, y in [(data.labeled_x, data.labeled_y), (data.val_x, data.val_y), (data.test_x, data.test_y)]:
        assert set(y) <= set(range(6)) and np.array_equal(x[:, 0, 0, 0] // 10, y)  # kept classes, relabelled
    assert data.num_classes == 6 and len(set(data.unlabeled_ids)) == len(data.unlabeled_ids)
    again = ood_ssl_data(dataset, 12, 18, seed=3, ood_classes=[6, 7, 8, 9], ood_fraction=fraction)
    assert np.array_equal(again.unlabeled_x, data.unlabeled_x)  # a function of the seed


def test_remapped_classes_and_noise():
    dataset = toy_dataset()
    data = ood_ssl_data(dataset, 16, 16, seed=0, ood_classes=[0, 5], ood_fraction=0.5)
    kept = [1, 2, 3, 4, 6, 7, 8, 9]
    assert np.array_equal(np.asarray(kept)[data.test_y], data.test_x[:, 0, 0, 0] // 10)
    noisy = ood_ssl_data(dataset, 20, 20, seed=0, ood_fraction=0.5, noise=True)
    assert noisy.num_classes == 10 and noisy.unlabeled_ood.mean() == pytest.approx(0.5, abs=0.01)
    assert np.all(noisy.unlabeled_true_y[noisy.unlabeled_ood] == -1)


@pytest.mark.parametrize("kwargs", [{"ood_fraction": 1.0, "noise": True}, {"ood_classes": [10]},
                                    {"ood_classes": [1], "noise": True}, {"ood_classes": list(range(9))}])
def test_impossible_requests_are_refused(kwargs):
    with pytest.raises(SplitSizeError):
        ood_ssl_data(toy_dataset(), 10, 10, seed=0, **kwargs)


def test_a_run_configuration_with_ood_flags_builds_the_ood_split_of_its_seed():
    config = config_of(["--ood_classes=6,7,8,9", "--ood_fraction=0.5", "--num_labeled=30", "--num_validation=60",
                        "--validation_batch=60", "--batch=10", "--seed=2"])
    data, split, _ = build.load_data(config)
    assert split is None  # an out-of-distribution run is defined by its configuration and seed
    reference = ood_ssl_data(load_image_dataset("digits"), 30, 60, seed=2, ood_classes=[6, 7, 8, 9], ood_fraction=0.5)
    np.testing.assert_array_equal(data.unlabeled_x, reference.unlabeled_x)
    np.testing.assert_array_equal(data.unlabeled_ood, reference.unlabeled_ood)
    assert data.num_classes == 6 and data.unlabeled_ood.mean() == pytest.approx(0.5, abs=0.01)
    noise, _, _ = build.load_data(config_of(["--ood_noise", "--ood_fraction=0.25"]))
    assert noise.num_classes == 10 and noise.unlabeled_ood.mean() == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ConfigError, match="does not fit digits: OOD classes must be in 0..9"):
        build.load_data(config_of(["--ood_classes=12", "--ood_fraction=0.5"]))


def test_a_comparison_picture_names_the_ood_kind_the_initial_lambda_and_the_hypergradient_variant():
    from experiments import compare_plots

    def title(args):
        return compare_plots.title(config_of(["--dataset=digits", "--algorithm=fixmatch", *args]).to_dict(), 10)

    assert title([]) == "fixmatch on digits, 50 labels, 10 seeds (paired)"
    assert title(["--ood_noise", "--ood_fraction=0.5", "--weight_init=3"]) == (
        "fixmatch on digits, 50 labels, 50% OOD unlabeled (noise images), λ0=3, 10 seeds (paired)")
    assert title(["--ood_classes=6,7,8,9", "--ood_fraction=0.25", "--influence_view=weak"]) == (
        "fixmatch on digits, 50 labels, 25% OOD unlabeled (classes 6,7,8,9 held out), influence_view=weak, "
        "10 seeds (paired)")
