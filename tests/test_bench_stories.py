"""bench/bench_stories.py's scoring: the cross-validated figure picks each fold's threshold on
the other folds only."""

from __future__ import annotations

from bench.bench_stories import cross_validated, evaluate, fold_of

LABELS = ["same_story", "different", "related"] * 20
PAIRS = [{"pair_id": f"p{i}", "label": label} for i, label in enumerate(LABELS)]


def test_folds_are_fixed_by_pair_id_and_all_used():
    assert [fold_of(p, 5) for p in PAIRS] == [fold_of(dict(p), 5) for p in PAIRS]
    assert {fold_of(p, 5) for p in PAIRS} == set(range(5))


def test_each_fold_is_predicted_at_the_threshold_best_on_the_other_folds():
    exact = [p["label"] == "same_story" for p in PAIRS]
    everything = [True] * len(PAIRS)
    result = cross_validated(PAIRS, {0.1: everything, 0.3: exact}, 5)
    assert result["thresholds"] == [0.3] * 5
    assert (result["f1"], result["fpr_different"]) == (1.0, 0.0)


def test_a_threshold_that_only_suits_the_held_out_fold_is_not_chosen_for_it():
    exact = [p["label"] == "same_story" for p in PAIRS]
    # Perfect on fold 0, everything linked elsewhere: the other folds never choose it.
    fold_zero_only = [same if fold_of(p, 5) == 0 else True for p, same in zip(PAIRS, exact)]
    noisy = [same or (fold_of(p, 5) == 0 and p["label"] == "different")
             for p, same in zip(PAIRS, exact)]
    different_in_fold_zero = sum(1 for p in PAIRS if fold_of(p, 5) == 0
                                 and p["label"] == "different")
    assert different_in_fold_zero > 0
    result = cross_validated(PAIRS, {0.2: fold_zero_only, 0.3: noisy}, 5)
    assert result["thresholds"][0] == 0.3
    assert result["fp"] == different_in_fold_zero


def test_evaluate_leaves_related_out_of_f1():
    scores = evaluate(PAIRS[:3], [True, False, True])
    assert (scores["tp"], scores["fp"], scores["f1"], scores["related_linked"]) == (
        1, 0, 1.0, "1/1")
