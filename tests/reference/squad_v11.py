"""The official SQuAD v1.1 scoring rules (evaluate-v1.1.py), written out for the tests that check
pith's numbers against them, plus 500xCompressor's un-normalised variant with str.split() in place
of NLTK's tokenizer (see train/metrics.h)."""
import collections
import re
import string


def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def token_f1(pred_tokens, gold_tokens):
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def f1_score(prediction, ground_truth):
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def raw_em(prediction, ground_truth):
    return prediction.strip() == ground_truth.strip()


def raw_f1(prediction, ground_truth):
    return token_f1(prediction.split(), ground_truth.split())
