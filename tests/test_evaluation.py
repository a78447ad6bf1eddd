"""Tests for helpers.evaluation: every number must agree with scikit-learn."""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics

from helpers import REPO_ROOT, evaluation

CLASSES = ["bag", "black", "blue", "dress", "shoe"]


def random_problem(seed, n_samples=80, prevalence=(0.5, 0.3, 0.2, 0.1, 0.06)):
    """Multi-hot truth with a skewed prevalence and noisy, informative probabilities."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n_samples, len(prevalence))) < prevalence).astype(int)
    for column in range(y_true.shape[1]):  # every class defined: one positive, one negative
        y_true[column, column] = 1
        y_true[-1 - column, column] = 0
    y_prob = np.clip(0.35 * y_true + rng.random(y_true.shape) * 0.65, 0, 1)
    return y_true, y_prob


@pytest.fixture(params=[0, 1, 2, 3], ids=lambda seed: f"seed{seed}")
def problem(request):
    return random_problem(request.param)


# --------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_classification_table_agrees_with_sklearn(problem, threshold):
    y_true, y_prob = problem
    table = evaluation.classification_table(y_true, y_prob, CLASSES, thresholds=threshold)
    y_pred = (y_prob >= threshold).astype(int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0)

    assert list(table.index) == CLASSES
    np.testing.assert_allclose(table["precision"], precision)
    np.testing.assert_allclose(table["recall"], recall)
    np.testing.assert_allclose(table["f1"], f1)
    np.testing.assert_array_equal(table["support"], support)
    np.testing.assert_array_equal(table["predicted"], y_pred.sum(axis=0))
    for column, label in enumerate(CLASSES):
        assert table.loc[label, "average_precision"] == pytest.approx(
            metrics.average_precision_score(y_true[:, column], y_prob[:, column]))
        assert table.loc[label, "roc_auc"] == pytest.approx(
            metrics.roc_auc_score(y_true[:, column], y_prob[:, column]))


@pytest.mark.parametrize("average", evaluation.AVERAGES)
def test_summary_averages_agree_with_sklearn(problem, average):
    y_true, y_prob = problem
    result = evaluation.summary(y_true, y_prob)
    y_pred = (y_prob >= 0.5).astype(int)
    expected = metrics.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                       zero_division=0)
    assert [result[average][key] for key in ("precision", "recall", "f1")] == \
        pytest.approx(list(expected[:3]))


def test_summary_scalars_agree_with_sklearn(problem):
    y_true, y_prob = problem
    result = evaluation.summary(y_true, y_prob)
    y_pred = (y_prob >= 0.5).astype(int)
    assert result["mAP"] == pytest.approx(
        metrics.average_precision_score(y_true, y_prob, average="macro"))
    assert result["macro"]["average_precision"] == result["mAP"]
    assert result["macro"]["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y_true, y_prob, average="macro"))
    assert result["micro"]["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y_true, y_prob, average="micro"))
    assert result["micro"]["average_precision"] == pytest.approx(
        metrics.average_precision_score(y_true, y_prob, average="micro"))
    assert result["subset_accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert result["hamming_loss"] == pytest.approx(metrics.hamming_loss(y_true, y_pred))
    assert (result["n_samples"], result["n_classes"]) == y_true.shape


def test_per_class_thresholds_are_applied_per_column(problem):
    y_true, y_prob = problem
    thresholds = np.linspace(0.2, 0.8, len(CLASSES))
    table = evaluation.classification_table(y_true, y_prob, CLASSES, thresholds=thresholds)
    y_pred = (y_prob >= thresholds).astype(int)
    np.testing.assert_allclose(table["f1"], metrics.f1_score(y_true, y_pred, average=None))
    np.testing.assert_allclose(table["threshold"], thresholds)


# --------------------------------------------------------------------------- undefined classes
@pytest.mark.parametrize("value, reason", [(0, "no positive example"),
                                           (1, "no negative example")])
def test_single_valued_class_is_nan_with_a_note_and_no_warning(value, reason):
    y_true, y_prob = random_problem(0)
    y_true[:, 2] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = evaluation.classification_table(y_true, y_prob, CLASSES)
        result = evaluation.summary(y_true, y_prob)

    assert np.isnan(table.loc["blue", "average_precision"])
    assert np.isnan(table.loc["blue", "roc_auc"])
    assert table.loc["blue", "note"].startswith(reason)
    assert table.drop(index="blue")[["average_precision", "roc_auc"]].notna().all().all()
    defined = [0, 1, 3, 4]
    assert result["mAP"] == pytest.approx(
        metrics.average_precision_score(y_true[:, defined], y_prob[:, defined]))
    assert result["macro"]["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y_true[:, defined], y_prob[:, defined]))


def test_nothing_predicted_is_noted():
    y_true, y_prob = random_problem(1)
    y_prob[:, 0] = 0.1
    table = evaluation.classification_table(y_true, y_prob, CLASSES)
    assert table.loc["bag", "precision"] == 0
    assert "nothing predicted" in table.loc["bag", "note"]


def test_all_classes_undefined_gives_nan_averages():
    y_true = np.zeros((6, 2), dtype=int)
    y_prob = np.full((6, 2), 0.2)
    result = evaluation.summary(y_true, y_prob)
    assert np.isnan(result["mAP"]) and np.isnan(result["micro"]["roc_auc"])
    assert result["subset_accuracy"] == 1.0


# --------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("seed", range(6))
def test_tuned_thresholds_never_lower_f1_than_one_half(seed):
    y_true, y_prob = random_problem(seed, n_samples=60)
    thresholds = evaluation.tune_thresholds(y_true, y_prob)
    f1_default = metrics.f1_score(y_true, evaluation.apply_thresholds(y_prob, 0.5),
                                  average=None, zero_division=0)
    f1_tuned = metrics.f1_score(y_true, evaluation.apply_thresholds(y_prob, thresholds),
                                average=None, zero_division=0)
    assert thresholds.shape == (len(CLASSES),)
    assert np.all(f1_tuned >= f1_default - 1e-12)
    assert f1_tuned.mean() >= f1_default.mean()


@pytest.mark.parametrize("seed", range(3))
def test_tuned_f1_is_the_best_on_the_curve(seed):
    y_true, y_prob = random_problem(seed)
    thresholds = evaluation.tune_thresholds(y_true, y_prob)
    for column in range(len(CLASSES)):
        precision, recall, _ = metrics.precision_recall_curve(y_true[:, column],
                                                              y_prob[:, column])
        with np.errstate(invalid="ignore"):
            best = np.nanmax(2 * precision * recall / (precision + recall))
        tuned = metrics.f1_score(y_true[:, column], y_prob[:, column] >= thresholds[column])
        assert tuned == pytest.approx(best)


def test_class_without_positives_keeps_the_default():
    y_true, y_prob = random_problem(0)
    y_true[:, 3] = 0
    thresholds = evaluation.tune_thresholds(y_true, y_prob, default=0.5)
    assert thresholds[3] == 0.5


@pytest.mark.parametrize("target", [0.6, 0.8])
def test_precision_objective_reaches_the_target_with_the_lowest_threshold(problem, target):
    y_true, y_prob = problem
    thresholds = evaluation.tune_thresholds(y_true, y_prob, objective="precision",
                                            target=target)
    for column in range(len(CLASSES)):
        curve = evaluation.threshold_curve(y_true[:, column], y_prob[:, column])
        reachable = curve[curve["precision"] >= target]
        if reachable.empty:
            continue
        predictions = y_prob[:, column] >= thresholds[column]
        assert metrics.precision_score(y_true[:, column], predictions) >= target
        assert metrics.recall_score(y_true[:, column], predictions) == pytest.approx(
            reachable["recall"].max())


@pytest.mark.parametrize("target", [0.5, 0.9, 1.0])
def test_recall_objective_keeps_the_target_with_the_highest_threshold(problem, target):
    y_true, y_prob = problem
    thresholds = evaluation.tune_thresholds(y_true, y_prob, objective="recall", target=target)
    for column in range(len(CLASSES)):
        column_prob = y_prob[:, column]
        assert metrics.recall_score(y_true[:, column], column_prob >= thresholds[column]) \
            >= target
        higher = column_prob[column_prob >= thresholds[column]].min()
        tighter = column_prob > higher  # the next threshold up drops that sample
        assert metrics.recall_score(y_true[:, column], tighter) < target or tighter.sum() == 0


def test_unreachable_precision_warns_naming_the_class():
    y_true = np.array([[1], [0], [0], [0]])
    y_prob = np.array([[0.2], [0.9], [0.8], [0.7]])
    with pytest.warns(UserWarning, match="dress"):
        evaluation.tune_thresholds(y_true, y_prob, objective="precision", target=0.99,
                                   classes=["dress"])


def test_tuned_threshold_lies_between_scores():
    y_true = np.array([[0], [1], [0], [1]])
    y_prob = np.array([[0.1], [0.4], [0.3], [0.9]])
    threshold = evaluation.tune_thresholds(y_true, y_prob)[0]
    assert 0.3 < threshold <= 0.4


@pytest.mark.parametrize("kwargs, message", [
    ({"objective": "auc"}, "objective"),
    ({"objective": "precision"}, "target"),
    ({"objective": "recall", "target": 1.5}, "target"),
    ({"objective": "f1", "target": 0.9}, "target"),
])
def test_tune_thresholds_rejects_bad_arguments(kwargs, message):
    y_true, y_prob = random_problem(0)
    with pytest.raises(ValueError, match=message):
        evaluation.tune_thresholds(y_true, y_prob, **kwargs)


@pytest.mark.parametrize("thresholds, expected", [
    (0.5, [[1, 0, 1], [0, 1, 0]]),
    ([0.6, 0.1, 0.5], [[0, 1, 1], [0, 1, 0]]),
])
def test_apply_thresholds(thresholds, expected):
    y_prob = np.array([[0.5, 0.2, 0.9], [0.1, 0.7, 0.4999]])
    result = evaluation.apply_thresholds(y_prob, thresholds)
    assert result.dtype.kind == "i"
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("call, message", [
    (lambda: evaluation.apply_thresholds(np.zeros((2, 3)), [0.5, 0.5]), "thresholds"),
    (lambda: evaluation.classification_table(np.zeros((2, 3)), np.zeros((2, 2)), ["a", "b"]),
     "same shape"),
    (lambda: evaluation.classification_table(np.full((2, 2), 2), np.zeros((2, 2)), ["a", "b"]),
     "y_true"),
    (lambda: evaluation.classification_table(np.zeros((2, 2)), np.zeros((2, 2)), ["a"]),
     "classes"),
    (lambda: evaluation.summary(np.zeros((2, 2)), np.full((2, 2), np.nan)), "y_prob"),
    (lambda: evaluation.error_pairs(np.zeros((2, 2)), np.full((2, 2), 0.7), ["a", "b"]),
     "apply_thresholds"),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- report
def test_evaluation_report_is_json_with_none_for_undefined():
    y_true, y_prob = random_problem(2)
    y_true[:, 4] = 0
    thresholds = evaluation.tune_thresholds(y_true, y_prob)
    report = evaluation.evaluation_report(y_true, y_prob, CLASSES, thresholds)
    text = json.dumps(report, allow_nan=False)
    loaded = json.loads(text)

    assert set(loaded) >= {"per_class", "micro", "macro", "weighted", "samples", "mAP",
                           "subset_accuracy", "hamming_loss", "thresholds"}
    assert list(loaded["per_class"]) == CLASSES
    assert set(loaded["per_class"]["bag"]) >= {"precision", "recall", "f1", "support",
                                               "average_precision", "roc_auc"}
    assert loaded["per_class"]["shoe"]["roc_auc"] is None
    assert isinstance(loaded["per_class"]["bag"]["support"], int)
    assert loaded["thresholds"] == pytest.approx(dict(zip(CLASSES, thresholds)))
    table = evaluation.classification_table(y_true, y_prob, CLASSES, thresholds)
    assert loaded["per_class"]["bag"]["f1"] == pytest.approx(table.loc["bag", "f1"])
    assert loaded["mAP"] == pytest.approx(evaluation.summary(y_true, y_prob, thresholds)["mAP"])


# --------------------------------------------------------------------------- errors
Y_TRUE = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
Y_PROB = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.95], [0.6, 0.1, 0.1], [0.7, 0.4, 0.2]])
SMALL = ["cat", "dog", "panda"]


@pytest.mark.parametrize("kind, expected", [
    ("false_positive", [(1, "panda", 0.95), (0, "dog", 0.8), (2, "cat", 0.6)]),
    ("false_negative", [(1, "dog", 0.3), (3, "dog", 0.4)]),
])
def test_worst_errors_are_sorted_worst_first(kind, expected):
    errors = evaluation.worst_errors(Y_TRUE, Y_PROB, SMALL, kind=kind)
    assert list(zip(errors["sample"], errors["label"], errors["probability"])) == expected
    assert errors.loc[0, "true_labels"] == [SMALL[j] for j in np.flatnonzero(
        Y_TRUE[expected[0][0]])]


def test_worst_errors_n_limits_rows():
    assert len(evaluation.worst_errors(Y_TRUE, Y_PROB, SMALL, n=1)) == 1


@pytest.mark.parametrize("kind, row, expected", [
    # panda predicted in image 1 whose true label is dog; cat in image 2 with no label
    ("false_positive", "panda", {"dog": 1}),
    ("false_positive", "cat", {"(none)": 1}),
    # dog missed in image 1 (panda predicted) and image 3 (cat predicted)
    ("false_negative", "dog", {"panda": 1, "cat": 1}),
])
def test_error_pairs_counts(kind, row, expected):
    pairs = evaluation.error_pairs(Y_TRUE, evaluation.apply_thresholds(Y_PROB), SMALL, kind=kind)
    assert list(pairs.columns) == SMALL + ["(none)"]
    observed = {column: value for column, value in pairs.loc[row].items() if value}
    assert observed == expected


def test_outcome_examples_give_the_surest_hits_false_alarms_and_misses():
    examples = evaluation.outcome_examples(Y_TRUE, Y_PROB, SMALL, n=1, labels=["dog", "cat"])
    assert list(examples.itertuples(index=False, name=None)) == [
        ("dog", "false_positive", 0, 0, 0.8), ("dog", "false_negative", 0, 1, 0.3),
        ("cat", "true_positive", 0, 0, 0.9), ("cat", "false_positive", 0, 2, 0.6)]
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        evaluation.outcome_examples(Y_TRUE, Y_PROB, SMALL, n=0)
    with pytest.raises(ValueError, match="labels"):
        evaluation.outcome_examples(Y_TRUE, Y_PROB, SMALL, labels=["cow"])


def test_module_imports_without_tensorflow():
    code = ("import sys, helpers.evaluation, helpers.plots; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr




@pytest.mark.parametrize("task", ["multi_label", "multi_class"])
def test_threshold_metrics_match_scikit_learn(task):
    rng = np.random.default_rng(3)
    y_prob = rng.random((30, 4))
    if task == "multi_label":
        y_true = (rng.random((30, 4)) < 0.4).astype(int)
        y_pred = (y_prob >= 0.5).astype(int)
    else:
        y_true = np.eye(4, dtype=int)[rng.integers(0, 4, 30)]
        y_pred = np.eye(4, dtype=int)[y_prob.argmax(axis=1)]
    values = evaluation.threshold_metrics(y_true, y_prob, task, prefix="val_")
    for average in evaluation.THRESHOLD_AVERAGES:
        expected = metrics.f1_score(y_true, y_pred, average=average, zero_division=0)
        assert values[f"val_f1_{average}"] == pytest.approx(expected)


def test_multi_class_decisions_are_the_argmax():
    y_prob = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(evaluation.apply_thresholds(y_prob, task="multi_class"),
                                  [[0, 1, 0], [1, 0, 0]])
    table = evaluation.classification_table([[0, 1, 0], [0, 0, 1]], y_prob, SMALL, task="multi_class")
    assert table["predicted"].tolist() == [1, 1, 0]
    assert table.loc["dog", "precision"] == 1.0 and table.loc["panda", "recall"] == 0.0
    with pytest.raises(ValueError, match="task"):
        evaluation.apply_thresholds(y_prob, task="multilabel")


def test_confusion_table_matches_sklearn(problem):
    y_true, y_prob = problem
    y_pred = evaluation.apply_thresholds(y_prob)
    table = evaluation.confusion_table(y_true, y_pred, CLASSES)
    matrices = metrics.multilabel_confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(table[["tn", "fp", "fn", "tp"]].to_numpy(), matrices.reshape(-1, 4))
    np.testing.assert_allclose(table["f1"], metrics.f1_score(y_true, y_pred, average=None, zero_division=0))
    np.testing.assert_array_equal(
        evaluation.error_counts(y_true, y_pred, "false_positive"), matrices[:, 0, 1])
    np.testing.assert_array_equal(
        evaluation.error_counts(y_true, y_pred, "false_negative"), matrices[:, 1, 0])


@pytest.mark.parametrize("kind", evaluation.CURVES)
def test_class_curves_give_sklearn_areas_and_chance_levels(problem, kind):
    y_true, y_prob = problem
    y_true = y_true.copy()
    y_true[:, -1] = 0
    curves = evaluation.class_curves(y_true, y_prob, CLASSES, kind=kind, micro_average=True)
    assert list(curves) == CLASSES + ["micro-average"]
    area = metrics.average_precision_score if kind == "pr" else metrics.roc_auc_score
    for index, label in enumerate(CLASSES[:-1]):
        assert curves[label]["area"] == pytest.approx(area(y_true[:, index], y_prob[:, index]))
        expected_chance = y_true[:, index].mean() if kind == "pr" else 0.5
        assert curves[label]["chance"] == pytest.approx(expected_chance)
        assert len(curves[label]["x"]) == len(curves[label]["y"])
    assert curves[CLASSES[-1]]["note"] == "no positive example" and curves[CLASSES[-1]]["x"] is None
    assert curves["micro-average"]["area"] == pytest.approx(area(y_true.ravel(), y_prob.ravel()))


# --------------------------------------------------------------------------- choosing thresholds
def threshold_problem(seed=0, n=300):
    """Four classes: learnt well, a rare one learnt backwards, a rare one ranked right but
    scored low (where tuning helps), and a middling one."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 4)) < [0.5, 0.04, 0.1, 0.3]).astype(int)
    truth[:2, 1] = 1  # a few positives at least
    probabilities = np.column_stack([
        np.clip(0.7 * truth[:, 0] + 0.3 * rng.random(n), 0, 1),
        # Positives get the lowest scores: the best F1 is "predict it on every image".
        np.where(truth[:, 1] == 1, 0.01 * rng.random(n), 0.05 + 0.3 * rng.random(n)),
        np.clip(0.25 * truth[:, 2] + 0.2 * rng.random(n), 0, 1),
        np.clip(0.5 * truth[:, 3] + 0.4 * rng.random(n), 0, 1),
    ])
    return truth, probabilities


def test_naive_tuning_picks_always_yes_and_choose_thresholds_does_not_keep_it():
    truth, probabilities = threshold_problem()
    naive = evaluation.tune_thresholds(truth, probabilities)
    assert (probabilities[:, 1] >= naive[1]).all()  # the raw optimum: every image
    thresholds, table = evaluation.choose_thresholds(
        truth, probabilities, classes=["good", "backwards", "low", "middling"])
    assert thresholds[1] == 0.5 and not table.loc["backwards", "kept"]
    assert table.loc["backwards", "reason"].startswith("always yes")
    assert table.loc["low", "kept"] and thresholds[2] == pytest.approx(naive[2])
    assert table.loc["low", "f1_tuned"] > table.loc["low", "f1_default"] + table.loc["low", "noise"]
    assert set(table.loc[~table["kept"], "threshold"]) == {0.5}


def test_the_choice_table_has_the_columns_the_notebook_and_cli_print():
    truth, probabilities = threshold_problem()
    _, table = evaluation.choose_thresholds(truth, probabilities)
    assert list(table.columns) == ["prevalence", "tuned", "share_tuned", "f1_default", "f1_tuned",
                                   "f1_always_yes", "gain", "noise", "threshold", "kept", "reason"]
    assert list(table.index) == [f"column {column}" for column in range(4)]
    assert set(table.attrs) == {"micro_f1", "subset_accuracy", "noise", "default", "n_samples"}
    json.dumps(table.attrs, allow_nan=False)


def test_thresholds_that_flood_a_class_or_gain_nothing_are_not_kept():
    rng = np.random.default_rng(1)
    n = 400
    truth = (rng.random((n, 2)) < [0.03, 0.4]).astype(int)
    truth[:3, 0] = 1
    # Uninformative scores: the best F1 predicts the rare class on a large share of images.
    probabilities = np.column_stack([0.3 * rng.random(n), np.clip(0.6 * truth[:, 1] + 0.35 * rng.random(n), 0, 1)])
    naive = evaluation.tune_thresholds(truth, probabilities)
    thresholds, table = evaluation.choose_thresholds(truth, probabilities, classes=["rare", "easy"])
    share = (probabilities[:, 0] >= naive[0]).mean()
    assert share > 2 * truth[:, 0].mean()
    assert not table["kept"].any() and (thresholds == 0.5).all()
    assert table.loc["rare", "reason"].startswith(("floods the class", "no better than always yes"))
    assert table.loc["easy", "reason"].startswith(("the same decisions", "gain"))


def test_chosen_thresholds_never_lower_validation_scores_beyond_noise():
    for seed in range(4):
        truth, probabilities = threshold_problem(seed)
        _, table = evaluation.choose_thresholds(truth, probabilities, seed=seed)
        for name in ("micro_f1", "subset_accuracy"):
            scores = table.attrs[name]
            assert scores["chosen"] >= scores["default"] - table.attrs["noise"][name]


def test_a_minimum_precision_limits_the_tuned_threshold():
    truth, probabilities = threshold_problem()
    loose = evaluation.tune_thresholds(truth, probabilities)
    with pytest.warns(UserWarning, match="column 1: no threshold reaches precision 0.95"):
        strict = evaluation.tune_thresholds(truth, probabilities, min_precision=0.95)
    for column in (0, 2, 3):
        decided = probabilities[:, column] >= strict[column]
        assert metrics.precision_score(truth[:, column], decided, zero_division=0) >= 0.95
        assert strict[column] >= loose[column] - 1e-12
    with pytest.warns(UserWarning, match="no threshold reaches precision 0.95"):
        evaluation.tune_thresholds(truth[:, [1]], probabilities[:, [1]], min_precision=0.95,
                                   classes=["backwards"])
    with pytest.raises(ValueError, match="min_precision"):
        evaluation.tune_thresholds(truth, probabilities, objective="recall", target=0.9,
                                   min_precision=0.5)
