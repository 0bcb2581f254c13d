"""The baseline every vertical model is measured against: TF-IDF + logistic regression."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["tfidf_logreg"]


def tfidf_logreg(train: Sequence[dict], test: Sequence[dict], seed: int = 0) -> list:
    """Predictions of TF-IDF (words and bigrams, sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vectorizer.fit_transform([r["text"] for r in train])
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(x, [str(r["label"]) for r in train])
    by_name = {str(r["label"]): r["label"] for r in train}
    return [by_name[p] for p in classifier.predict(vectorizer.transform([r["text"] for r in test]))]
