"""The WordPiece (BERT, uncased: every normalizer step on) and Unigram (XLM-R, Precompiled charsmap)
tokenizers the encoder harness encodes with, made from the test assets the way
tests/reference/tokenizer_encoders_parity.py makes them: make_tokenizers.py ASSETS OUT writes
OUT/bert-uncased/ and OUT/xlmr/."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import tokenizer_encoders_parity as tep  # noqa: E402


def main():
    assets, out = sys.argv[1:3]
    texts = tep.load_texts(assets)
    print("tokenizers:", tep.make_bert(texts, out, lowercase=True), tep.make_xlmr(texts, out, "xlmr"))


if __name__ == "__main__":
    main()
