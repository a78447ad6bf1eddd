"""Tests for helpers.plots: every plot draws headless, on the axes it is given, one panel each."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics  # noqa: E402

from helpers import evaluation, plots  # noqa: E402

CLASSES = ["bag", "black", "blue", "dress", "shoe"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_problem(seed=0, n_samples=40):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n_samples, len(CLASSES))) < [0.5, 0.4, 0.3, 0.2, 0.15]).astype(int)
    y_true[0], y_true[1] = 1, 0
    y_prob = np.clip(0.4 * y_true + 0.6 * rng.random(y_true.shape), 0, 1)
    return y_true, y_prob


def write_images(directory, n, size=(24, 16)):
    paths = []
    for index in range(n):
        path = directory / f"image_{index}.png"
        Image.new("RGB", size, (index * 20 % 256, 90, 160)).save(path)
        paths.append(str(path))
    return paths


def titles(grid):
    return [ax.get_title() for ax in grid.axes_]


# --------------------------------------------------------------------------- data scan
@pytest.mark.parametrize("n_images", [None, 50])
def test_plot_label_counts_has_one_bar_per_label_with_its_count(n_images):
    counts = pd.Series({"person": 40, "car": 12, "dog": 3})
    display = plots.plot_label_counts(counts, n_images=n_images)
    assert isinstance(display, plots.Display) and isinstance(display.ax_, Axes)
    ax = display.ax_
    bars = ax.containers[0]
    assert sorted(bar.get_width() for bar in bars) == [3, 12, 40]
    texts = [text.get_text() for text in ax.texts]
    assert any(text.startswith("40") for text in texts)
    assert ("(80%)" in " ".join(texts)) == (n_images is not None)
    assert [tick.get_text() for tick in ax.get_yticklabels()][-1] == "person"  # largest on top


def test_plot_label_counts_draws_on_the_given_axes():
    figure, (left, right) = plt.subplots(1, 2)
    assert plots.plot_label_counts({"a": 1, "b": 2}, ax=right).ax_ is right
    assert len(plt.get_fignums()) == 1 and not left.patches


def test_plot_label_counts_rejects_a_list():
    with pytest.raises(ValueError, match="label_counts"):
        plots.plot_label_counts([1, 2])


@pytest.mark.parametrize("form", ["per_image", "distribution"])
def test_plot_labels_per_image_accepts_both_forms(form):
    per_image = [0, 1, 1, 2, 2, 2, 4]
    if form == "per_image":
        values = per_image
    else:
        values = pd.Series([1, 2, 3, 0, 1], index=pd.RangeIndex(5, name="n_labels"))
    ax = plots.plot_labels_per_image(values).ax_
    assert [bar.get_height() for bar in ax.containers[0]] == [1, 2, 3, 0, 1]


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_cooccurrence(normalize):
    table = pd.DataFrame([[4, 2], [2, 3]], index=["a", "b"], columns=["a", "b"])
    ax = plots.plot_cooccurrence(table, normalize=normalize).ax_
    values = np.asarray(ax.collections[0].get_array()).reshape(2, 2)
    expected = [[1, 0.5], [2 / 3, 1]] if normalize else [[4, 2], [2, 3]]
    np.testing.assert_allclose(values, expected)


def test_plot_cooccurrence_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        plots.plot_cooccurrence(pd.DataFrame([[1, 2, 3]]))


def test_plot_image_sizes_three_panels_skipping_unreadable():
    sizes = pd.DataFrame({"width": pd.array([100, 200, None], dtype="Int64"),
                          "height": pd.array([50, 100, None], dtype="Int64")})
    grid = plots.plot_image_sizes(sizes)
    assert len(grid.axes_) == 3
    assert titles(grid)[2] == "aspect: median 2.00"
    assert "2 images" in grid.figure_.get_suptitle()


def test_plot_image_sizes_uses_given_axes_and_checks_columns():
    figure, axes = plt.subplots(1, 3)
    grid = plots.plot_image_sizes(pd.DataFrame({"width": [10], "height": [10]}), ax=axes)
    assert list(grid.axes_) == list(axes)
    with pytest.raises(ValueError, match="height"):
        plots.plot_image_sizes(pd.DataFrame({"width": [10]}))


@pytest.mark.parametrize("n, ncols", [(4, 2), (10, 4)])
def test_plot_sample_grid_titles_are_labels(tmp_path, n, ncols):
    paths = write_images(tmp_path, 6)
    labels = [["red", "shirt"], [], ["blue"], ["white", "bag"], ["black"], ["shoe"]]
    frame = pd.DataFrame({"filename": paths, "labels": labels})
    grid = plots.plot_sample_grid(frame, n=n, ncols=ncols, target_size=(8, 8))
    assert len(grid.axes_) == min(n, 6)
    assert set(titles(grid)) <= {"red, shirt", "(no label)", "blue", "white, bag", "black",
                                 "shoe"}
    assert all(ax.images[0].get_array().shape[:2] == (8, 8) for ax in grid.axes_)


def test_plot_sample_grid_warns_about_unreadable_images(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    frame = pd.DataFrame({"filename": [str(broken)], "labels": [["x"]]})
    with pytest.warns(UserWarning, match="broken.jpg"):
        grid = plots.plot_sample_grid(frame)
    assert not grid.ax_.images and grid.ax_.texts


def test_plot_sample_grid_names_a_missing_column():
    with pytest.raises(ValueError, match="labels"):
        plots.plot_sample_grid(pd.DataFrame({"filename": ["a.jpg"]}))


@pytest.mark.parametrize("augmented_shape, rows", [((3, 8, 8, 3), 2), ((2, 3, 8, 8, 3), 3)])
def test_plot_augmented_batch_rows(augmented_shape, rows):
    rng = np.random.default_rng(0)
    grid = plots.plot_augmented_batch(rng.random((3, 8, 8, 3)), rng.random(augmented_shape),
                                      labels=[["a"], ["b", "c"], []])
    assert len(grid.axes_) == rows * 3
    assert titles(grid)[:3] == ["a", "b, c", "(no label)"]
    assert grid.axes_[0].get_ylabel() == "original"


def test_plot_augmented_batch_rejects_0_255_pixels():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.plot_augmented_batch(np.full((1, 4, 4, 3), 255.0), np.zeros((1, 4, 4, 3)))


HISTORY = {"loss": [0.9, 0.6, 0.5], "val_loss": [1.0, 0.7, 0.8],
           "f1_score": [0.2, 0.5, 0.6], "val_f1_score": [0.1, 0.4, 0.5],
           "learning_rate": [1e-3] * 3}


@pytest.mark.parametrize("history", [HISTORY, pd.DataFrame(HISTORY).rename_axis("epoch")
                                     .reset_index()])
def test_plot_history_one_panel_per_metric(history):
    grid = plots.plot_history(history)
    assert titles(grid) == ["loss", "f1 score"]
    loss_axes = grid.axes_[0]
    assert [line.get_label() for line in loss_axes.get_lines()][:2] == ["train", "validation"]
    assert list(loss_axes.get_lines()[0].get_xdata()) == [1, 2, 3]
    kept = [text.get_text() for text in loss_axes.get_legend().get_texts()][-1]
    assert kept == "kept: epoch 2 (best val_loss)"


def test_plot_history_marks_the_epoch_the_callbacks_kept_on_every_panel():
    history = dict(HISTORY, val_f1_micro=[0.3, 0.2, 0.6])
    grid = plots.plot_history(history, metrics=["loss", "f1_score"])
    for ax in grid.axes_:
        assert ax.get_legend().get_texts()[-1].get_text() == "kept: epoch 3 (best val_f1_micro)"
    grid = plots.plot_history(history, metrics=["loss"], monitor="val_loss")
    assert grid.ax_.get_legend().get_texts()[-1].get_text() == "kept: epoch 2 (best val_loss)"


def test_plot_history_selected_metric_and_unknown_metric():
    assert len(plots.plot_history(HISTORY, metrics=["f1_score"]).axes_) == 1
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_history(HISTORY, metrics=["accuracy"])


# --------------------------------------------------------------------------- post-mortem
@pytest.mark.parametrize("ncols", [2, 4])
def test_plot_confusion_grid_one_panel_per_class_with_counts(ncols):
    y_true, y_prob = random_problem()
    y_pred = evaluation.apply_thresholds(y_prob)
    grid = plots.plot_confusion_grid(y_true, y_pred, CLASSES, ncols=ncols)
    assert len(grid.axes_) == len(CLASSES)
    assert [title.split("\n")[0] for title in titles(grid)] == CLASSES
    matrices = metrics.multilabel_confusion_matrix(y_true, y_pred)
    f1 = metrics.f1_score(y_true, y_pred, average=None)
    for ax, matrix, score in zip(grid.axes_, matrices, f1):
        counts = [int(text.get_text().split("\n")[0].replace(",", "")) for text in ax.texts]
        assert counts == list(matrix.ravel())
        assert f"F1 {score:.2f}" in ax.get_title()
    visible = [ax for ax in grid.figure_.axes if ax.get_visible()]
    assert len(visible) == len(CLASSES)


def test_plot_confusion_grid_uses_given_axes_and_wants_predictions():
    y_true, y_prob = random_problem()
    figure, axes = plt.subplots(1, len(CLASSES))
    grid = plots.plot_confusion_grid(y_true, y_prob >= 0.5, CLASSES, ax=axes)
    assert list(grid.axes_) == list(axes)
    with pytest.raises(ValueError, match="apply_thresholds"):
        plots.plot_confusion_grid(y_true, y_prob, CLASSES)


@pytest.mark.parametrize("plot", [plots.plot_pr_curves, plots.plot_roc_curves])
def test_curves_one_per_class_and_skip_single_valued_classes(plot):
    y_true, y_prob = random_problem()
    y_true[:, 4] = 0
    figure, ax = plt.subplots()
    assert plot(y_true, y_prob, CLASSES, ax=ax).ax_ is ax
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    for label in CLASSES[:4]:
        assert any(entry.startswith(f"{label} (") for entry in legend)
    assert "shoe: skipped (no positive example)" in legend
    curves = [line for line in ax.get_lines() if line.get_label().split(" (")[0] in CLASSES]
    assert len(curves) == 4


@pytest.mark.parametrize("plot", [plots.plot_pr_curves, plots.plot_roc_curves])
def test_curves_micro_average(plot):
    y_true, y_prob = random_problem()
    ax = plot(y_true, y_prob, CLASSES, micro_average=True).ax_
    assert any(line.get_label().startswith("micro-average") for line in ax.get_lines())


def test_plot_threshold_curves_marks_the_tuned_threshold():
    y_true, y_prob = random_problem()
    y_true[:, 2] = 0
    thresholds = evaluation.tune_thresholds(y_true, y_prob)
    grid = plots.plot_threshold_curves(y_true, y_prob, CLASSES, thresholds=thresholds)
    assert len(grid.axes_) == len(CLASSES)
    assert [title.split("\n")[0] for title in titles(grid)] == CLASSES
    for index, ax in enumerate(grid.axes_):
        if index == 2:
            assert "no positive example" in ax.texts[0].get_text()
            continue
        tuned = [line for line in ax.get_lines() if line.get_label() == "tuned"][0]
        assert tuned.get_xdata()[0] == pytest.approx(thresholds[index])
        assert f"at {thresholds[index]:.2f}" in ax.get_title()


@pytest.mark.parametrize("kind, word", [("false_positive", "false positive"),
                                        ("false_negative", "missed")])
def test_plot_error_gallery_worst_first(tmp_path, kind, word):
    y_true, y_prob = random_problem(n_samples=12)
    paths = write_images(tmp_path, 12)
    grid = plots.plot_error_gallery(paths, y_true, y_prob, CLASSES, kind=kind, n=4, ncols=2)
    errors = evaluation.worst_errors(y_true, y_prob, CLASSES, kind=kind, n=4)
    assert len(grid.axes_) == len(errors) > 0
    for ax, error in zip(grid.axes_, errors.itertuples()):
        assert ax.get_title(loc="left").startswith(
            f"{word}: {error.label} {error.probability:.2f}")
        assert ax.images


def test_plot_error_gallery_without_errors_and_with_wrong_filenames(tmp_path):
    y_true = np.array([[1, 0], [0, 1]])
    grid = plots.plot_error_gallery(write_images(tmp_path, 2), y_true, y_true * 0.9,
                                    ["a", "b"])
    assert "no false positive" in grid.axes_[0].texts[0].get_text()
    with pytest.raises(ValueError, match="filenames"):
        plots.plot_error_gallery(["one.jpg"], y_true, y_true * 0.9, ["a", "b"])


@pytest.mark.parametrize("kind", ["false_positive", "false_negative"])
@pytest.mark.parametrize("normalize", [False, True])
def test_plot_error_pairs_heatmap_matches_the_table(kind, normalize):
    y_true, y_prob = random_problem()
    y_pred = evaluation.apply_thresholds(y_prob)
    ax = plots.plot_error_pairs(y_true, y_pred, CLASSES, kind=kind, normalize=normalize).ax_
    pairs = evaluation.error_pairs(y_true, y_pred, CLASSES, kind=kind)
    values = np.asarray(ax.collections[0].get_array()).reshape(pairs.shape)
    if not normalize:
        np.testing.assert_array_equal(values, pairs.to_numpy())
    else:
        assert np.nanmax(values) <= 1
    assert [tick.get_text().split(" (")[0] for tick in ax.get_yticklabels()] == CLASSES


def test_plot_metric_comparison_grouped_bars():
    y_true, y_prob = random_problem()
    tables = {"SmallVGGNet": evaluation.classification_table(y_true, y_prob, CLASSES),
              "ResNet50": evaluation.classification_table(y_true, y_prob ** 2, CLASSES)}
    figure, ax = plt.subplots()
    assert plots.plot_metric_comparison(tables, "f1", ax=ax).ax_ is ax
    heights = [bar.get_height() for container in ax.containers for bar in container]
    assert len(heights) == 2 * len(CLASSES)
    np.testing.assert_allclose(heights[:len(CLASSES)], tables["SmallVGGNet"]["f1"])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == list(tables)


def test_plot_metric_comparison_tidy_table_without_hue():
    table = pd.DataFrame({"model": ["mlp", "cnn"], "f1": [0.4, 0.7]})
    ax = plots.plot_metric_comparison(table, "f1", x="model", hue=None).ax_
    assert [round(bar.get_height(), 2) for bar in ax.containers[0]] == [0.4, 0.7]
    with pytest.raises(ValueError, match="recall"):
        plots.plot_metric_comparison(table, "recall", x="model")


# --------------------------------------------------------------------------- explanations
def test_plot_heatmap_overlay_one_panel_per_label_with_peaks_and_boxes():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    heatmaps = np.zeros((2, 5, 5))
    heatmaps[0, 0, 0] = heatmaps[1, 4, 4] = 1.0
    boxes = pd.DataFrame({"label": ["cat", "dog"], "ymin": [0.0, 0.5], "xmin": [0.0, 0.5],
                          "ymax": [0.5, 1.0], "xmax": [0.5, 1.0]})
    display = plots.plot_heatmap_overlay(image, heatmaps, ["cat", "dog"], peaks=[[0.1, 0.1], [0.9, 0.9]],
                                         probabilities=[0.8, 0.3], boxes=boxes)
    assert titles(display) == ["image", "cat 0.80", "dog 0.30"]
    cat = display.axes_[1]
    assert cat.images[1].get_extent() == [-0.5, 39.5, 19.5, -0.5]  # the map covers the image
    (x,), (y,) = cat.lines[0].get_xdata(), cat.lines[0].get_ydata()
    assert (x, y) == pytest.approx((0.1 * 40 - 0.5, 0.1 * 20 - 0.5))
    solid = [patch for patch in cat.patches if patch.get_linestyle() == "-"]
    assert len(cat.patches) == 2 and solid[0].get_xy() == (-0.5, -0.5)  # the cat's own box
    with pytest.raises(ValueError, match="one \\(h, w\\) map per label"):
        plots.plot_heatmap_overlay(image, heatmaps, ["cat"])
    with pytest.raises(ValueError, match="divide by 255"):
        plots.plot_heatmap_overlay(image * 1.0 + 200, heatmaps, ["cat", "dog"])


def test_plot_outcome_gallery_rows_per_label_columns_per_outcome(tmp_path):
    paths = write_images(tmp_path, 3)
    with pytest.warns(UserWarning, match="missing.png: not shown"):
        display = plots.plot_outcome_gallery(outcome_cases(paths))
    assert len(display) == 2 * 3 * 2  # two labels, three outcomes, two ranks
    first_row = [axis.get_title() for axis in display.axes_[:6]]
    assert first_row == ["true positive 0.90", "", "", "", "false negative 0.10",
                         "false negative 0.20"]
    texts = [text.get_text() for axis in display.axes_ for text in axis.texts]
    assert "no false positive" in texts and "unreadable image" in texts
    assert display.axes_[0].get_ylabel() == "bag" and display.axes_[6].get_ylabel() == "shoe"
    with pytest.raises(ValueError, match="missing \\['heatmap'"):
        plots.plot_outcome_gallery(outcome_cases(paths).drop(columns=["heatmap"]))


def test_set_theme_is_applied_by_calling_it():
    with matplotlib.rc_context({"axes.titleweight": "normal"}):
        plots.set_theme()
        assert matplotlib.rcParams["axes.titleweight"] == "bold"


# --------------------------------------------------------------------------- one kind of result
def _every_plot(tmp_path):
    """One call of every public plot function, each with a style keyword for its main artist."""
    y_true, y_prob = random_problem()
    y_pred = evaluation.apply_thresholds(y_prob)
    paths = write_images(tmp_path, len(y_true))
    frame = pd.DataFrame({"filename": paths[:4], "labels": [["a"], ["b"], [], ["a", "b"]]})
    images = np.random.default_rng(0).random((2, 8, 8, 3))
    sizes = pd.DataFrame({"width": [10, 20], "height": [10, 30]})
    return {
        "plot_label_counts": lambda: plots.plot_label_counts({"a": 3, "b": 1}, color="red"),
        "plot_labels_per_image": lambda: plots.plot_labels_per_image([0, 1, 1], alpha=0.5),
        "plot_cooccurrence": lambda: plots.plot_cooccurrence(
            pd.DataFrame([[2, 1], [1, 3]], index=["a", "b"], columns=["a", "b"]), cmap="Greens"),
        "plot_image_sizes": lambda: plots.plot_image_sizes(sizes, alpha=0.5),
        "plot_sample_grid": lambda: plots.plot_sample_grid(frame, n=2, interpolation="nearest"),
        "plot_augmented_batch": lambda: plots.plot_augmented_batch(images, images,
                                                                   interpolation="nearest"),
        "plot_history": lambda: plots.plot_history(HISTORY, linewidth=3),
        "plot_learning_rate": lambda: plots.plot_learning_rate([1e-3, 5e-4], color="red"),
        "plot_confusion_grid": lambda: plots.plot_confusion_grid(y_true, y_pred, CLASSES,
                                                                 cmap="Greens"),
        "plot_pr_curves": lambda: plots.plot_pr_curves(y_true, y_prob, CLASSES, alpha=0.5),
        "plot_roc_curves": lambda: plots.plot_roc_curves(y_true, y_prob, CLASSES, alpha=0.5),
        "plot_threshold_curves": lambda: plots.plot_threshold_curves(y_true, y_prob, CLASSES,
                                                                     alpha=0.5),
        "plot_error_gallery": lambda: plots.plot_error_gallery(paths, y_true, y_prob, CLASSES,
                                                               n=2, interpolation="nearest"),
        "plot_error_pairs": lambda: plots.plot_error_pairs(y_true, y_pred, CLASSES, cmap="Greens"),
        "plot_metric_comparison": lambda: plots.plot_metric_comparison(
            pd.DataFrame({"model": ["a", "b"], "f1": [0.4, 0.7]}), "f1", x="model", hue=None,
            alpha=0.5),
        "plot_heatmap_overlay": lambda: plots.plot_heatmap_overlay(
            images[0], np.random.default_rng(1).random((2, 4, 4)), ["a", "b"], cmap="magma"),
        "plot_outcome_gallery": lambda: plots.plot_outcome_gallery(
            outcome_cases(paths).query("filename != 'missing.png'"), cmap="magma"),
    }


def outcome_cases(paths):
    """What helpers.explain.outcome_cases gives, without a model: two labels, random maps."""
    rng = np.random.default_rng(0)
    rows = [("bag", "true_positive", 0, paths[0], 0.9), ("bag", "false_negative", 0, paths[1], 0.1),
            ("bag", "false_negative", 1, "missing.png", 0.2), ("shoe", "false_positive", 1, paths[2], 0.7)]
    cases = pd.DataFrame(rows, columns=["label", "outcome", "rank", "filename", "probability"])
    cases["heatmap"] = [rng.random((4, 4)) for _ in rows]
    cases["peak_y"], cases["peak_x"] = 0.25, 0.75
    return cases


def test_every_public_plot_function_is_exercised(tmp_path):
    public = {name for name in dir(plots) if name.startswith("plot_")}
    assert public == set(_every_plot(tmp_path))


@pytest.mark.parametrize("name", sorted(name for name in dir(plots) if name.startswith("plot_")))
def test_every_plot_returns_a_display_with_its_figure_and_axes(tmp_path, name):
    display = _every_plot(tmp_path)[name]()
    assert isinstance(display, plots.Display)
    assert display.figure_ is display.axes_[0].figure
    assert all(isinstance(ax, Axes) for ax in display.axes_)
    assert (display.ax_ is display.axes_[0]) if len(display.axes_) == 1 else \
        list(display.ax_) == list(display.axes_)


def test_pr_curves_show_each_class_chance_level_beside_a_legend_outside():
    y_true, y_prob = random_problem()
    ax = plots.plot_pr_curves(y_true, y_prob, CLASSES).ax_
    prevalence = y_true.mean(axis=0)
    chance_levels = sorted(line.get_ydata()[0] for line in ax.get_lines()
                           if line.get_linestyle() == ":")
    np.testing.assert_allclose(chance_levels, sorted(prevalence))
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # right of the axes
    assert any(f"chance {prevalence[0]:.2f}" in text.get_text() for text in legend.get_texts())
