import json

import pytest

from training.text import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Tokenizer, tokenize

TEXTS = ["The Café serves coffee.", "the cafe SERVES tea", "ﬁne coffee, fine tea"]


def test_normalises_unicode_and_case():
    # NFKC folds the "ﬁ" ligature and full-width letters; lower-casing folds case.
    assert tokenize("ﬁne ＣＯＦＦＥＥ") == ["fine", "coffee"]
    assert tokenize("Café") == tokenize("CAFÉ") == ["café"]


def test_vocabulary_has_specials_first_and_respects_min_count():
    tok = Tokenizer.build(TEXTS, min_count=2)
    assert tuple(tok.vocab[:4]) == SPECIALS
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    # "the" 2×, "serves" 2×, "coffee" 2×, "tea" 2×, "fine" 2×: kept; "café"/"cafe" 1×: dropped
    assert set(tok.vocab[4:]) == {"the", "serves", "coffee", "tea", "fine"}
    assert tok.encode("the café")[2] == UNK_ID


def test_encode_decode_round_trip_and_truncation():
    tok = Tokenizer.build(TEXTS, min_count=1)
    ids = tok.encode("The Café serves coffee.")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids) == "the café serves coffee"
    assert tok.encode("the cafe serves tea", max_length=3) == ids[:1] + [
        tok.index["the"],
        tok.index["cafe"],
    ]
    assert tok.encode("", max_length=5) == [BOS_ID, EOS_ID]


def test_save_load_round_trip(tmp_path):
    tok = Tokenizer.build(TEXTS, min_count=1)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert again.vocab == tok.vocab and again.min_count == tok.min_count
    assert again.encode("fine tea, café") == tok.encode("fine tea, café")


def test_bad_input_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="min_count"):
        Tokenizer.build(TEXTS, min_count=0)
    with pytest.raises(ValueError, match="special tokens"):
        Tokenizer(["a", "b"])
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer.build(TEXTS).encode("tea", max_length=0)
    (tmp_path / "t.json").write_text(json.dumps({"format": 99, "vocab": list(SPECIALS)}))
    with pytest.raises(ValueError, match="unsupported tokenizer format"):
        Tokenizer.load(tmp_path / "t.json")


def test_a_query_differing_only_in_whitespace_and_case_is_the_same_query_to_every_guard():
    from learning.splits import untrainable_queries
    from training import datasets
    from training.text import query_key

    held_out = next(iter(sorted(datasets.load_queries("dl19").values())))
    variant = "  " + held_out.upper().replace(" ", "   \t") + " "
    assert query_key(variant) == query_key(held_out)
    # The training guard and the learning loop's guard both refuse the variant.
    assert query_key(variant) in datasets.evaluation_query_texts()
    assert query_key(variant) in untrainable_queries()
