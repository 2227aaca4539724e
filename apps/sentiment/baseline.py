"""The classical baseline the recurrent model is measured against: logistic regression
over binary unigram and bigram features scaled by their naive-Bayes log-count ratios
(NBSVM's features, Wang & Manning 2012, with a logistic instead of a hinge loss)."""

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from seqapps.apps.cli import string_tensor
from seqapps.apps.sentiment.model import clean_review

# Inverse regularisation strengths tried; the one most accurate on validation is kept.
COSTS = (0.3, 1.0, 3.0)


def cleaned(texts):
    """The texts as the model's vectorizer sees them."""
    return [text.decode() for text in clean_review(string_tensor(texts)).numpy()]


def log_count_ratios(features, labels, alpha=1.0):
    """r = log((p / |p|_1) / (q / |q|_1)) with p, q the smoothed feature counts of the
    positive and negative reviews."""
    labels = np.asarray(labels).astype(bool)
    p = alpha + np.asarray(features[labels].sum(axis=0)).ravel()
    q = alpha + np.asarray(features[~labels].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def ngram_vectorizer(max_features=None, vocabulary=None):
    """Binary unigram and bigram features of cleaned texts, written as TextVectorization
    writes its n-grams ("not good")."""
    return CountVectorizer(
        lowercase=False,
        token_pattern=r"\S+",
        ngram_range=(1, 2),
        binary=True,
        max_features=max_features,
        vocabulary=vocabulary,
    )


@dataclass
class NgramClassifier:
    """The fitted baseline: logit = sum of `weights` of the n-grams in a text + `bias`
    (each weight its logistic regression coefficient times its log-count ratio)."""

    ngrams: list[str]
    weights: np.ndarray
    bias: float
    C: float

    def probabilities(self, texts):
        logits = ngram_vectorizer(vocabulary=self.ngrams).transform(cleaned(texts)) @ self.weights + self.bias
        return 1 / (1 + np.exp(-logits))


def fit_baseline(train, validation, max_features=None):
    """The NB-weighted logistic regression over the `max_features` (default: all)
    unigrams and bigrams found in most training texts, fitted on `train` (texts,
    labels), its cost chosen on `validation`."""
    vectorizer = ngram_vectorizer(max_features)
    features = vectorizer.fit_transform(cleaned(train[0]))
    ratios = log_count_ratios(features, train[1])
    x, x_val = features.multiply(ratios).tocsr(), vectorizer.transform(cleaned(validation[0])).multiply(ratios)
    fits = [LogisticRegression(C=cost, solver="liblinear", dual=True).fit(x, train[1]) for cost in COSTS]
    best = max(fits, key=lambda fit: np.mean(fit.predict(x_val) == validation[1]))
    ngrams = vectorizer.get_feature_names_out().tolist()
    return NgramClassifier(ngrams, best.coef_[0] * ratios, float(best.intercept_[0]), best.C)
